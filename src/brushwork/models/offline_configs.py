"""Offline diffusers configs for single-file (LDM / A1111 layout) SD 1.5 and SDXL checkpoints.

`from_single_file` converts the weights itself, but it still needs the
diffusers-format *configs* of the pipeline it is building (model_index.json,
unet/vae/text-encoder configs, scheduler, tokenizer files). By default it
downloads them from the Hub, which we must never do. So we ship the configs
of `stable-diffusion-v1-5/stable-diffusion-v1-5` and
`stabilityai/stable-diffusion-xl-base-1.0` in the package, derive the
tokenizer vocab/merges from the open-clip wheel (see `clip_vocab`), and lay
them out in a cache folder that can be passed as `config=`.

Each family comes in two *variants*, told apart by the UNet's input channels:
"base" (4: the latent) and "inpaint" (9: latent + masked-image latent + mask,
e.g. `sd-v1-5-inpainting`). An inpainting checkpoint's configs are the base
ones with `unet.in_channels` 9 and the inpainting pipeline class, so they are
derived from the shipped base configs (`VARIANT_PATCHES`), not shipped twice.
SDXL has a third, "refiner" (`stabilityai/stable-diffusion-xl-refiner-1.0`):
another UNet (384 wide, conditioned on OpenCLIP bigG alone and an aesthetic
score) without the CLIP-L text encoder. Its configs differ in kind, so they
are shipped on their own (`configs/sdxl-refiner`); it is told apart by its
text encoders (single files: OpenCLIP under `conditioner.embedders.0.model.`;
folders: `text_encoder` null in `model_index.json`).

Nothing heavy is imported at module import time (no torch, no diffusers).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brushwork.contract.families import FAMILIES, VARIANTS, Family, Variant
from brushwork.models.clip_vocab import bpe_file_path, write_clip_tokenizer_files

__all__ = [
    "Family",
    "FAMILIES",
    "Variant",
    "VARIANTS",
    "PIPELINE_CLASS_BY_FAMILY",
    "PIPELINE_CLASSES",
    "VARIANT_PATCHES",
    "shipped_config_dir",
    "detect_family",
    "detect_variant",
    "variant_of_in_channels",
    "variant_of_pipeline_folder",
    "missing_components",
    "read_checkpoint_keys",
    "read_checkpoint_shapes",
    "materialize_config_dir",
    "family_of_pipeline_config",
    "UnsupportedLayout",
    "check_against_config",
]



PIPELINE_CLASS_BY_FAMILY: dict[Family, str] = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}
# The diffusers pipeline class that runs each (family, variant); base first (error messages list them in order).
PIPELINE_CLASSES: dict[tuple[Family, Variant], str] = {
    ("sd15", "base"): "StableDiffusionPipeline",
    ("sdxl", "base"): "StableDiffusionXLPipeline",
    ("sd15", "inpaint"): "StableDiffusionInpaintPipeline",
    ("sdxl", "inpaint"): "StableDiffusionXLInpaintPipeline",
    ("sdxl", "refiner"): "StableDiffusionXLImg2ImgPipeline",
    ("flux", "base"): "FluxPipeline",  # FLUX.1 loads through brushwork.models.flux
}
# UNet input channels of each variant: latent (4) / latent + masked-image latent (4) + mask (1).
IN_CHANNELS: dict[Variant, int] = {"base": 4, "inpaint": 9}
# What a variant's configs change in the shipped (base) configs: sub-folder -> config.json keys.
VARIANT_PATCHES: dict[Variant, dict[str, dict[str, Any]]] = {
    "base": {},
    "inpaint": {"unet": {"in_channels": IN_CHANNELS["inpaint"]}},
    "refiner": {},  # shipped as its own folder (OWN_CONFIG_DIRS), nothing to patch
}
VARIANT_LABELS: dict[Variant, str] = {"base": "", "inpaint": " inpainting", "refiner": " refiner"}
# Variants whose configs are shipped in their own folder under configs/ rather than patched from the base ones.
OWN_CONFIG_DIRS: dict[tuple[Family, Variant], str] = {("sdxl", "refiner"): "sdxl-refiner"}
# The refiner's only text encoder (OpenCLIP bigG) sits first in its conditioner.
OPEN_CLIP_REFINER_PREFIX = "conditioner.embedders.0.model."
KEY_OPEN_CLIP_REFINER = OPEN_CLIP_REFINER_PREFIX + "positional_embedding"

UNET_PREFIX = "model.diffusion_model."

# Marker keys, identical to diffusers' `CHECKPOINT_KEY_NAMES` (single_file_utils.py);
# a test pins them to diffusers so the two cannot drift apart silently. They only
# exist at full size, so `detect_family` also looks at structure.
KEY_V1 = "model.diffusion_model.output_blocks.11.0.skip_connection.weight"
KEY_V2 = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
KEY_XL_BASE = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
KEY_XL_REFINER = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"
KEY_UPSCALE = "model.diffusion_model.input_blocks.10.0.skip_connection.bias"
KEY_PLAYGROUND = "edm_mean"
KEY_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"
KEY_CLIP = "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"
KEY_CLIP_SDXL = "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight"
KEY_OPEN_CLIP = "cond_stage_model.model.token_embedding.weight"
KEY_OPEN_CLIP_SDXL = "conditioner.embedders.1.model.positional_embedding"
KEY_VAE = "first_stage_model.decoder.conv_out.weight"

# Recognisable layouts we do not support, to name them in the error.
_OTHER_LAYOUTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Stable Diffusion 3", ("joint_blocks.0.context_block.adaLN_modulation.1.bias",)),
    ("Stable Cascade", ("clip_txt_mapper.weight", "down_blocks.1.0.channelwise.0.weight")),
    ("a ControlNet", ("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight")),
    (
        "a diffusers-format UNet state dict (not an LDM single file)",
        ("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"),
    ),
    ("a standalone VAE", ("encoder.conv_in.weight", "decoder.conv_out.weight")),
)

_SUPPORTED = ("SD 1.x/1.5 and SDXL base, text-to-image or inpainting, and the SDXL refiner (LDM layout); "
              "FLUX.1 schnell/dev transformers (BFL or ComfyUI layout)")

_STAMP_NAME = ".brushwork-config-stamp"
_CONFIG_SUFFIXES = (".json",)


def shipped_config_dir(family: Family, variant: Variant = "base") -> Path:
    """Folder inside the installed package holding the JSON for `family` (the refiner has its own)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    return Path(__file__).resolve().parent / "configs" / OWN_CONFIG_DIRS.get((family, variant), family)


class UnsupportedLayout(ValueError):
    """A readable checkpoint of a kind brushwork does not run; `what` names the kind."""

    def __init__(self, what: str) -> None:
        super().__init__(f"unsupported checkpoint layout: {what}. Supported: {_SUPPORTED}.")
        self.what = what


def _unsupported(what: str) -> UnsupportedLayout:
    return UnsupportedLayout(what)


def _shape(value: Any) -> tuple[int, ...]:
    """A shape from a shape sequence or from anything with `.shape` (a tensor, in a state dict)."""
    return tuple(int(d) for d in (value.shape if hasattr(value, "shape") else value))


def _in_channels(shapes: Mapping[str, Any] | None) -> int | None:
    if shapes is None or KEY_UNET_IN not in shapes:
        return None
    shape = _shape(shapes[KEY_UNET_IN])
    return shape[1] if len(shape) > 1 else None


def variant_of_in_channels(in_channels: int, family: Family) -> Variant:
    """"base" for a 4-channel UNet, "inpaint" for 9; `UnsupportedLayout` naming anything else."""
    for variant, channels in IN_CHANNELS.items():
        if in_channels == channels:
            return variant
    kind = {8: "instruct-pix2pix"}.get(in_channels, "non-text-to-image")
    label = "SD 1.x" if family == "sd15" else "SDXL"
    raise _unsupported(f"{label} {kind} UNet ({in_channels} input channels; only 4, text-to-image, "
                       "and 9, inpainting, are supported)")


def detect_variant(shapes: Mapping[str, Any], family: Family | None = None) -> Variant:
    """"base" or "inpaint" from a single file's UNet input convolution (key -> shape, or a state dict).

    Call it after `detect_family` (which refuses other channel counts with the
    layout named); `family` only words the error and is detected when None.
    """
    if is_flux_layout(shapes):
        return "base"  # detect_family refused FLUX.1 Fill/Depth by their input width
    in_ch = _in_channels(shapes)
    if in_ch is None:
        raise ValueError(f"the UNet has no input convolution ({KEY_UNET_IN}); cannot tell a text-to-image "
                         "from an inpainting model")
    family = family or detect_family(shapes)
    return _variant(in_ch, family, family == "sdxl" and _is_refiner_layout(set(shapes)))


def _variant(in_channels: int, family: Family, refiner: bool) -> Variant:
    """The variant a UNet's input width means; an SDXL refiner (told by its conditioning) takes 4."""
    variant = variant_of_in_channels(in_channels, family)
    if refiner:
        if variant != "base":
            raise _unsupported(f"SDXL refiner with a {in_channels}-channel UNet (a refiner's UNet takes 4)")
        return "refiner"
    return variant


def _is_refiner_layout(names: set[str]) -> bool:
    """SDXL's refiner: OpenCLIP first in the conditioner, no CLIP-L (diffusers' `xl_refiner` marker at full size)."""
    return (KEY_XL_REFINER in names or any(k.startswith(OPEN_CLIP_REFINER_PREFIX) for k in names)) and not any(
        k.startswith("conditioner.embedders.0.transformer.") for k in names)


def detect_family(keys: Iterable[str] | Mapping[str, Any]) -> Family:
    """Tell SD 1.5 from SDXL by the key names of an LDM-layout single-file checkpoint.

    diffusers' `infer_diffusers_model_type` cannot be used: it reads tensor
    `.shape`s, and its marker keys (e.g. `output_blocks.11...`, `resblocks.9...`)
    only exist at full size, so tiny test/demo checkpoints would all look like
    "v1". We check the same markers first and then fall back on structure: which
    text encoders the file carries (`cond_stage_model.transformer.` = CLIP-L
    alone -> SD1.x; `conditioner.embedders.0.transformer.` + `.1.model.` =
    CLIP-L + OpenCLIP bigG -> SDXL) and whether the UNet has SDXL's `label_emb`.

    Pass a mapping of key -> shape (see `read_checkpoint_shapes`) or a state
    dict of tensors to also reject UNets with input channels other than 4
    (text-to-image) or 9 (inpainting, see `detect_variant`), e.g.
    instruct-pix2pix's 8, and an SD 2.x UNet by its 1024-wide cross-attention;
    with names only, SD 2.x is still caught by its OpenCLIP-H text encoder keys.

    Raises ValueError naming the layout for anything that is not SD1.5/SDXL base
    or their inpainting variants.
    """
    shapes: Mapping[str, Any] | None = keys if isinstance(keys, Mapping) else None
    names = set(keys)
    in_ch = _in_channels(shapes)

    def has_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in names)

    if is_flux_layout(names):  # FLUX.1 transformer (BFL file or ComfyUI checkpoint): models/flux.py
        refuse_relatives(names, shapes)
        return "flux"
    if KEY_PLAYGROUND in names:
        raise _unsupported("Playground v2.5 (EDM formulation)")
    if "v_pred" in names:
        raise _unsupported("v-prediction model (it carries a `v_pred` marker key)")

    if has_prefix(UNET_PREFIX):
        if _is_refiner_layout(names):
            # A refiner's UNet takes SDXL's added conditions (time ids + aesthetic score + pooled text).
            if f"{UNET_PREFIX}label_emb.0.0.weight" not in names:
                raise _unsupported("SDXL refiner conditioner (OpenCLIP only) on a UNet without SDXL's added "
                                   "conditioning (label_emb): an incomplete or unknown refiner")
            if in_ch is not None:
                variant_of_in_channels(in_ch, "sdxl")
            return "sdxl"
        is_xl = (
            KEY_XL_BASE in names
            or has_prefix("conditioner.embedders.1.model.")
            or f"{UNET_PREFIX}label_emb.0.0.weight" in names
        )
        if is_xl:
            if in_ch is not None:
                variant_of_in_channels(in_ch, "sdxl")  # refuses edit UNets (e.g. 8 channels) by name
            return "sdxl"
        if KEY_OPEN_CLIP in names or has_prefix("cond_stage_model.model."):
            raise _unsupported("Stable Diffusion 2.x (OpenCLIP-H text encoder; often v-prediction)")
        if shapes is not None and KEY_V2 in shapes and _shape(shapes[KEY_V2])[-1:] == (1024,):
            raise _unsupported("Stable Diffusion 2.x (1024-wide cross-attention)")
        if KEY_UPSCALE in names or f"{UNET_PREFIX}label_emb.weight" in names:
            raise _unsupported("Stable Diffusion x4 upscaler")
        if has_prefix(UNET_PREFIX + "joint_blocks.") or has_prefix(UNET_PREFIX + "double_blocks."):
            pass  # a transformer (SD3 / Flux) under the LDM prefix: named below
        elif has_prefix(UNET_PREFIX + "input_blocks.") and has_prefix(UNET_PREFIX + "output_blocks."):
            if in_ch is not None:
                variant_of_in_channels(in_ch, "sd15")
            return "sd15"

    for label, markers in _OTHER_LAYOUTS:
        if any(m in names or f"{UNET_PREFIX}{m}" in names for m in markers):
            raise _unsupported(label)
    if any(k.startswith("lora_") or ".lora_" in k or ".lora." in k for k in names):
        raise _unsupported("a LoRA (adapter weights, not a full checkpoint)")
    if not names:
        raise _unsupported("empty checkpoint (no tensors)")
    sample = ", ".join(sorted(names)[:3])
    raise _unsupported(f"unrecognised key layout (e.g. {sample})")


def missing_components(keys: Iterable[str], family: Family, variant: Variant = "base") -> list[str]:
    """Pipeline components whose weights are absent from the single file.

    Some CivitAI uploads ship without a VAE or text encoder; diffusers then fails
    late with a generic message. Callers can check this first and ask for a
    separate component instead. A refiner has one text encoder (text_encoder_2).
    """
    names = set(keys)
    if family == "flux":
        return []  # the transformer alone; the rest comes from its companion folder (models/flux.py)
    wanted: dict[str, str] = {"vae": KEY_VAE}
    if (family, variant) == ("sdxl", "refiner"):
        wanted["text_encoder_2"] = KEY_OPEN_CLIP_REFINER
    elif family == "sd15":
        wanted["text_encoder"] = KEY_CLIP
    elif family == "sdxl":
        wanted["text_encoder"] = KEY_CLIP_SDXL
        wanted["text_encoder_2"] = KEY_OPEN_CLIP_SDXL
    else:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    return [name for name, key in wanted.items() if key not in names]


def _safe_open(path: Path):  # type: ignore[no-untyped-def]
    from safetensors import safe_open

    try:
        # "numpy" keeps torch out of the import graph; only the header is read.
        return safe_open(str(path), framework="numpy")
    except Exception as exc:  # SafetensorError, OSError
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"not a readable .safetensors file ({reason})") from None


def read_checkpoint_keys(path: Path) -> list[str]:
    """Tensor names of a .safetensors file, read from its header (no tensor data loaded)."""
    with _safe_open(Path(path)) as fh:
        return list(fh.keys())


def read_checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a .safetensors file, from its header (no tensor data loaded)."""
    with _safe_open(Path(path)) as fh:
        return {key: tuple(int(d) for d in fh.get_slice(key).get_shape()) for key in fh.keys()}


def _shipped_files(family: Family, variant: Variant = "base") -> list[Path]:
    root = shipped_config_dir(family, variant)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _CONFIG_SUFFIXES)
    if not any(p.name == "model_index.json" for p in files):
        raise FileNotFoundError(f"shipped configs for {family!r} are missing from {root}")
    return files


def _tokenizer_dirs(family: Family, variant: Variant = "base") -> list[str]:
    root = shipped_config_dir(family, variant)
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("tokenizer*/tokenizer_config.json"))


def _stamp(family: Family, variant: Variant = "base") -> str:
    """Fingerprint of what a materialised folder must contain; changes when the package or BPE does."""
    root = shipped_config_dir(family, variant)
    digest = hashlib.sha256(b"brushwork-offline-configs-v1\0")
    for path in _shipped_files(family, variant):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(bpe_file_path().read_bytes())
    if variant != "base":  # base keeps its v1 stamp: folders materialised before variants existed stay valid
        patch = {"variant": variant, "patches": VARIANT_PATCHES[variant],
                 "class": PIPELINE_CLASSES[(family, variant)]}
        digest.update(json.dumps(patch, sort_keys=True).encode())
    return digest.hexdigest()


def _is_complete(folder: Path, family: Family, stamp: str, variant: Variant = "base") -> bool:
    try:
        if (folder / _STAMP_NAME).read_text(encoding="utf-8").strip() != stamp:
            return False
    except OSError:
        return False
    root = shipped_config_dir(family, variant)
    needed = [folder / p.relative_to(root) for p in _shipped_files(family, variant)]
    for tok in _tokenizer_dirs(family, variant):
        needed += [folder / tok / "vocab.json", folder / tok / "merges.txt"]
    return all(p.is_file() for p in needed)


def _patched_json(src: Path, relative: Path, family: Family, variant: Variant) -> dict[str, Any] | None:
    """The shipped JSON at `relative` as `variant` needs it, or None when the variant leaves it as shipped."""
    if variant == "base":
        return None
    if relative.as_posix() == "model_index.json":
        return {**json.loads(src.read_text(encoding="utf-8")), "_class_name": PIPELINE_CLASSES[(family, variant)]}
    patch = VARIANT_PATCHES[variant].get(relative.parent.as_posix()) if relative.name == "config.json" else None
    return {**json.loads(src.read_text(encoding="utf-8")), **patch} if patch else None


def _build(tmp: Path, family: Family, stamp: str, variant: Variant = "base") -> None:
    root = shipped_config_dir(family, variant)
    for src in _shipped_files(family, variant):
        relative = src.relative_to(root)
        dst = tmp / relative
        dst.parent.mkdir(parents=True, exist_ok=True)
        patched = _patched_json(src, relative, family, variant)
        if patched is None:
            shutil.copyfile(src, dst)
        else:
            dst.write_text(json.dumps(patched, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    for tok in _tokenizer_dirs(family, variant):
        write_clip_tokenizer_files(tmp / tok)
    # The stamp goes last: its presence marks the folder as complete.
    (tmp / _STAMP_NAME).write_text(stamp + "\n", encoding="utf-8")


def materialize_config_dir(family: Family, cache_dir: Path, variant: Variant = "base") -> Path:
    """Lay out a diffusers config folder for `family` under `cache_dir/configs/<family>`.

    `variant="inpaint"` lays out `cache_dir/configs/<family>-inpaint`: the same
    configs with the UNet's `in_channels` 9 and the inpainting pipeline class
    in `model_index.json` (see `VARIANT_PATCHES`).

    The result is what `from_single_file(..., config=str(folder), local_files_only=True)`
    needs. The folder is built in a private temp dir and renamed into place,
    so a concurrent process either sees no folder or a complete one; if two
    race, the loser discards its copy and reuses the winner's. A stamp file
    (hash of the shipped JSON + BPE table) makes a folder left by an older
    brushwork version get rebuilt instead of reused.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    if variant not in VARIANTS or (family, variant) not in PIPELINE_CLASSES:
        raise ValueError(f"unknown model variant {variant!r} of {family}; supported: "
                         f"{', '.join(v for f, v in PIPELINE_CLASSES if f == family)}")
    parent = Path(cache_dir) / "configs"
    name = family if variant == "base" else f"{family}-{variant}"
    target = parent / name
    stamp = _stamp(family, variant)
    if _is_complete(target, family, stamp, variant):
        return target

    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        _build(tmp, family, stamp, variant)
        for _attempt in range(5):
            try:
                os.rename(tmp, target)  # atomic; fails if target exists and is non-empty
                return target
            except OSError:
                if _is_complete(target, family, stamp, variant):
                    return target  # another process won the race with identical content
                # Stale or partial folder (older version, crash): move it aside, then retry.
                aside = parent / f".{name}.stale-{uuid.uuid4().hex}"
                try:
                    os.rename(target, aside)
                except OSError:
                    pass  # someone else moved / replaced it; just retry
                else:
                    shutil.rmtree(aside, ignore_errors=True)
        if _is_complete(target, family, stamp, variant):
            return target
        raise OSError(f"could not place offline config folder at {target}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def family_of_pipeline_config(folder: Path) -> Family:
    """Family of a diffusers config folder, from `model_index.json`'s `_class_name`.

    The inpainting pipeline classes count as their family; which variant the
    folder holds is the UNet's business (`variant_of_pipeline_folder`).
    """
    index = Path(folder) / "model_index.json"
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read pipeline config {index}: {exc}") from exc
    for (family, _variant), name in PIPELINE_CLASSES.items():
        if class_name == name:
            return family
    supported = ", ".join(f"{name} ({fam})" for (fam, _variant), name in PIPELINE_CLASSES.items())
    raise ValueError(f"unsupported pipeline class {class_name!r} in {index}; supported: {supported}")


def variant_of_pipeline_folder(folder: Path, family: Family | None = None) -> Variant:
    """"base" or "inpaint" from a diffusers folder's `unet/config.json` `in_channels`.

    The UNet decides, not the pipeline class: its weights are what must fit.
    Raises ValueError (an `UnsupportedLayout` for other channel counts).
    """
    if (family or family_of_pipeline_config(folder)) == "flux":
        return variant_of_folder(folder)  # type: ignore[return-value]
    config = Path(folder) / "unet" / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the UNet config {config}: {exc}") from exc
    in_channels = data.get("in_channels", 4) if isinstance(data, dict) else None
    if not isinstance(in_channels, int):
        raise ValueError(f"{config} has no integer in_channels")
    family = family or family_of_pipeline_config(folder)
    return _variant(in_channels, family, family == "sdxl" and _folder_is_refiner(Path(folder)))


def _folder_is_refiner(folder: Path) -> bool:
    """A diffusers SDXL folder without the first (CLIP-L) text encoder but with the second: the refiner layout."""
    try:
        index = json.loads((folder / "model_index.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False

    def present(name: str) -> bool:
        value = index.get(name) if isinstance(index, dict) else None
        return isinstance(value, list) and any(part is not None for part in value)

    return not present("text_encoder") and present("text_encoder_2")


# ---------------------------------------------------------------- shapes against configs

FAMILY_LABELS: dict[Family, str] = {"sd15": "SD 1.5", "sdxl": "SDXL", "flux": "FLUX.1"}
LDM_VAE_PREFIX = "first_stage_model."
_CLIP_PREFIXES: dict[Family, tuple[str, ...]] = {
    "sd15": ("cond_stage_model.transformer.text_model.", "cond_stage_model.transformer."),
    "sdxl": ("conditioner.embedders.0.transformer.text_model.", "conditioner.embedders.0.transformer."),
}
OPEN_CLIP_SDXL_PREFIX = "conditioner.embedders.1.model."

# (component, what, value in the file, value in the config); a file value of None is not checked.
_Fact = tuple[str, str, Any, Any]


def _dims(shapes: Mapping[str, Any], key: str) -> tuple[int, ...] | None:
    return _shape(shapes[key]) if key in shapes else None


def _dim(shapes: Mapping[str, Any], key: str, axis: int) -> int | None:
    shape = _dims(shapes, key)
    return shape[axis] if shape is not None and -len(shape) <= axis < len(shape) else None


def _known(count: int) -> int | None:
    """A block count read from key names; 0 means the file says nothing (not checked)."""
    return count or None


def count_blocks(names: Iterable[str], prefix: str) -> int:
    """How many numbered blocks (`prefix0.`, `prefix1.`, ...) the key names hold: highest index + 1."""
    indices = {int(part) for name in names if name.startswith(prefix)
               for part in [name[len(prefix):].split(".", 1)[0]] if part.isdigit()}
    return max(indices) + 1 if indices else 0


def _per_level(value: Any, levels: int) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * levels


def _read_config(config_dir: Path, sub: str, patches: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> dict[str, Any] | None:
    path = config_dir / sub / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        return None
    return {**data, **(patches or {}).get(sub, {})}


def _clip_prefix(names: set[str], family: Family) -> str | None:
    for prefix in _CLIP_PREFIXES[family]:
        if prefix + "embeddings.token_embedding.weight" in names:
            return prefix
    return None


def _clip_facts(shapes: Mapping[str, Any], prefix: str, cfg: Mapping[str, Any], component: str) -> list[_Fact]:
    tok = prefix + "embeddings.token_embedding.weight"
    return [
        (component, "width", _dim(shapes, tok, 1), cfg.get("hidden_size")),
        (component, "vocabulary size", _dim(shapes, tok, 0), cfg.get("vocab_size")),
        (component, "positions", _dim(shapes, prefix + "embeddings.position_embedding.weight", 0),
         cfg.get("max_position_embeddings")),
        (component, "layers", _known(count_blocks(shapes, prefix + "encoder.layers.")),
         cfg.get("num_hidden_layers")),
        (component, "MLP width", _dim(shapes, prefix + "encoder.layers.0.mlp.fc1.weight", 0),
         cfg.get("intermediate_size")),
    ]


def _open_clip_facts(shapes: Mapping[str, Any], prefix: str, cfg: Mapping[str, Any], component: str) -> list[_Fact]:
    tok = prefix + "token_embedding.weight"
    return [
        (component, "width", _dim(shapes, tok, 1), cfg.get("hidden_size")),
        (component, "vocabulary size", _dim(shapes, tok, 0), cfg.get("vocab_size")),
        (component, "positions", _dim(shapes, prefix + "positional_embedding", 0), cfg.get("max_position_embeddings")),
        (component, "layers", _known(count_blocks(shapes, prefix + "transformer.resblocks.")),
         cfg.get("num_hidden_layers")),
        (component, "MLP width", _dim(shapes, prefix + "transformer.resblocks.0.mlp.c_fc.weight", 0),
         cfg.get("intermediate_size")),
        (component, "projection width", _dim(shapes, prefix + "text_projection", 1), cfg.get("projection_dim")),
    ]


def _unet_levels(shapes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The down path of an LDM UNet: per resolution level, its width, resnet count and transformer depth."""
    prefix = UNET_PREFIX + "input_blocks."
    levels: list[dict[str, Any]] = [{"width": None, "resnets": 0, "depth": 0}]
    for index in range(1, count_blocks(shapes, prefix)):
        block = f"{prefix}{index}."
        if block + "0.op.weight" in shapes:  # a downsampler closes the level
            levels.append({"width": None, "resnets": 0, "depth": 0})
            continue
        level = levels[-1]
        level["resnets"] += 1
        if level["width"] is None:
            level["width"] = _dim(shapes, block + "0.in_layers.2.weight", 0)
        depth = count_blocks(shapes, block + "1.transformer_blocks.")
        level["depth"] = max(level["depth"], depth)
    return levels


def _unet_facts(shapes: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[_Fact]:
    u = UNET_PREFIX
    if u + "input_blocks.0.0.weight" not in shapes:
        return []
    levels = _unet_levels(shapes)
    widths = list(cfg.get("block_out_channels") or [])
    n = len(widths)
    down_types = list(cfg.get("down_block_types") or [])
    depth_cfg = _per_level(cfg.get("transformer_layers_per_block", 1), n)
    attention = [depth_cfg[i] if i < len(down_types) and "CrossAttn" in down_types[i] else 0 for i in range(n)]
    attn2 = next((k for k in sorted(shapes) if k.startswith(u) and k.endswith(".attn2.to_k.weight")), None)
    proj_in = next((k for k in sorted(shapes) if k.startswith(u) and k.endswith(".proj_in.weight")), None)
    cross = cfg.get("cross_attention_dim")
    time_dim = cfg.get("time_embedding_dim") or (widths[0] * 4 if widths else None)
    added = cfg.get("projection_class_embeddings_input_dim") if cfg.get("addition_embed_type") == "text_time" else 0
    mid_depth = count_blocks(shapes, u + "middle_block.1.transformer_blocks.")
    facts: list[_Fact] = [
        ("UNet", "input channels", _dim(shapes, u + "input_blocks.0.0.weight", 1), cfg.get("in_channels")),
        ("UNet", "output channels", _dim(shapes, u + "out.2.weight", 0), cfg.get("out_channels")),
        ("UNet", "widths per level", [lv["width"] for lv in levels], widths),
        ("UNet", "blocks per level", [lv["resnets"] for lv in levels], _per_level(cfg.get("layers_per_block"), n)),
        ("UNet", "transformer depth per level", [lv["depth"] for lv in levels], attention),
        ("UNet", "middle transformer depth", mid_depth if mid_depth else None,
         depth_cfg[-1] if cfg.get("mid_block_type", "UNetMidBlock2DCrossAttn") == "UNetMidBlock2DCrossAttn" else 0),
        ("UNet", "time embedding width", _dim(shapes, u + "time_embed.0.weight", 0), time_dim),
        ("UNet", "added-conditions width", _dim(shapes, u + "label_emb.0.0.weight", 1) or 0, added or 0),
    ]
    if attn2 is not None and isinstance(cross, int):
        facts.append(("UNet", "cross-attention width", _dim(shapes, attn2, 1), cross))
    if proj_in is not None:
        linear = len(_shape(shapes[proj_in])) == 2
        facts.append(("UNet", "attention projection", "linear" if linear else "1x1 convolution",
                      "linear" if cfg.get("use_linear_projection") else "1x1 convolution"))
    return facts


def vae_facts(shapes: Mapping[str, Any], cfg: Mapping[str, Any], prefix: str = LDM_VAE_PREFIX) -> list[_Fact]:
    """What a VAE's config fixes about its tensor shapes, read from LDM-layout keys under `prefix`."""
    if prefix + "decoder.conv_in.weight" not in shapes:
        return []
    down = prefix + "encoder.down."
    widths = [_dim(shapes, f"{down}{i}.block.0.conv1.weight", 0) for i in range(count_blocks(shapes, down))]
    return [
        ("VAE", "latent channels", _dim(shapes, prefix + "decoder.conv_in.weight", 1), cfg.get("latent_channels")),
        ("VAE", "image channels", _dim(shapes, prefix + "encoder.conv_in.weight", 1), cfg.get("in_channels")),
        ("VAE", "widths per level", widths or None, list(cfg.get("block_out_channels") or [])),
        ("VAE", "blocks per level", _known(count_blocks(shapes, down + "0.block.")), cfg.get("layers_per_block")),
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "/".join("?" if v is None else str(v) for v in value)
    return str(value)


def _is_shipped(config_dir: Path, family: Family, variant: Variant = "base") -> bool:
    return Path(config_dir).resolve() == shipped_config_dir(family, variant).resolve()


def _config_label(config_dir: Path, family: Family, variant: Variant = "base") -> str:
    if _is_shipped(config_dir, family, variant) or (Path(config_dir) / _STAMP_NAME).is_file():
        return f"{FAMILY_LABELS[family]}{VARIANT_LABELS[variant]}'s standard config"
    return f"the config folder {config_dir}"


def mismatches(facts: Iterable[_Fact]) -> list[_Fact]:
    """The facts whose file value is known and differs from the config's."""
    return [fact for fact in facts if fact[2] is not None and fact[3] is not None and fact[2] != fact[3]]


def describe_mismatch(found: list[_Fact], where: str) -> str:
    """One line: the first mismatch in full, and which other components also differ."""
    component, what, in_file, in_config = found[0]
    message = f"{component} {what} {_fmt(in_file)} does not match {_fmt(in_config)} in {where}"
    others = sorted({fact[0] for fact in found} - {component})
    if others:
        message += f" (also mismatched: {', '.join(others)})"
    return message


def check_against_config(shapes: Mapping[str, Any], config_dir: Path | None, family: Family,
                         variant: Variant = "base") -> None:
    """Refuse a single-file checkpoint whose tensors cannot fill the pipeline `config_dir` describes.

    `config_dir` None (or the shipped folder itself) means the family's
    standard config for `variant`: the shipped JSON with `VARIANT_PATCHES`
    applied, which is what `materialize_config_dir(family, home, variant)`
    lays out. Any other folder is taken as it is (`variant` only words the
    message), so a materialised `<family>-inpaint` folder is compared as is.

    Compares what fixes every tensor's shape, per component: text encoder(s)
    width/depth/vocabulary/positions/MLP/projection, UNet channels, widths and
    blocks per level, transformer depths, cross-attention width, projection
    kind and added conditions, VAE latent channels and widths. diffusers
    would otherwise fail deep inside loading with a bare size mismatch (or,
    for depths, silently drop layers). Raises ValueError naming the component.
    """
    if family == "flux":
        return check_flux_file(shapes, config_dir)
    config_dir = shipped_config_dir(family, variant) if config_dir is None else Path(config_dir)
    patches = VARIANT_PATCHES[variant] if _is_shipped(config_dir, family, variant) else None
    config_family = family_of_pipeline_config(config_dir)
    where = _config_label(config_dir, family, variant)
    if config_family != family:
        raise ValueError(f"the file holds an {FAMILY_LABELS[family]} model but {where} describes "
                         f"{FAMILY_LABELS[config_family]}")
    names = set(shapes)
    facts: list[_Fact] = []
    clip_prefix = _clip_prefix(names, family)
    text_cfg = _read_config(config_dir, "text_encoder", patches)
    if clip_prefix is not None and text_cfg is not None:
        facts += _clip_facts(shapes, clip_prefix, text_cfg, "text encoder")
    text2_cfg = _read_config(config_dir, "text_encoder_2", patches)
    if family == "sdxl" and text2_cfg is not None:
        prefix = OPEN_CLIP_REFINER_PREFIX if variant == "refiner" else OPEN_CLIP_SDXL_PREFIX
        facts += _open_clip_facts(shapes, prefix, text2_cfg, "second text encoder")
    unet_cfg = _read_config(config_dir, "unet", patches)
    if unet_cfg is not None:
        facts += _unet_facts(shapes, unet_cfg)
    vae_cfg = _read_config(config_dir, "vae", patches)
    if vae_cfg is not None:
        facts += vae_facts(shapes, vae_cfg)
    found = mismatches(facts)
    if found:
        hint = ("a fine-tune with other sizes needs a diffusers config folder that matches it (models.NAME.config)"
                if "standard config" in where else "use a config folder that matches this file")
        raise ValueError(f"{describe_mismatch(found, where)}; {hint}")


# -- FLUX.1: the transformer's layout and config facts (loading and conversion: models/flux.py) --

FLUX_MARKER = "double_blocks.0.img_attn.norm.key_norm.scale"
COMFY_PREFIX = "model.diffusion_model."
# FLUX.1 relatives whose files also carry the marker, but which FluxPipeline cannot run.
_RELATIVES: tuple[tuple[str, str], ...] = (
    ("FLUX.2", "single_stream_modulation.lin.weight"),
    ("Chroma", "distilled_guidance_layer.in_proj.weight"),
)
# img_in input width (packed latent channels) of FLUX.1 tools that need their own pipelines.
_TOOL_INPUTS = {384: "FLUX.1 Fill (inpainting)", 128: "FLUX.1 Depth/Canny (control)"}
FLUX_IN_CHANNELS = 64  # 16 latent channels x 2x2 patches
COMPANION_HINT = (
    "a FLUX.1 single file holds the transformer only: set models.NAME.config to a diffusers FLUX.1 folder with "
    "text_encoder/, text_encoder_2/, tokenizer/, tokenizer_2/, vae/, scheduler/ and model_index.json (e.g. "
    "`hf download black-forest-labs/FLUX.1-schnell --exclude 'transformer/*' 'flux1-schnell.safetensors' "
    "'ae.safetensors'`, or any complete FLUX.1 diffusers folder)"
)


def transformer_prefix(names: Iterable[str]) -> str | None:
    """"" (BFL file) or "model.diffusion_model." (ComfyUI/Forge) when the names hold a FLUX-style transformer."""
    names = set(names)
    for prefix in ("", COMFY_PREFIX):
        if prefix + FLUX_MARKER in names:
            return prefix
    return None


def is_flux_layout(names: Iterable[str]) -> bool:
    return transformer_prefix(names) is not None


def refuse_relatives(names: Iterable[str], shapes: Mapping[str, Any] | None = None) -> None:
    """Raise `UnsupportedLayout` for FLUX.2, Chroma, Fill or Depth files (they carry FLUX.1's marker too)."""
    names = set(names)
    prefix = transformer_prefix(names) or ""
    for label, marker in _RELATIVES:
        if marker in names or COMFY_PREFIX + marker in names:
            raise UnsupportedLayout(label)
    width = _dim(shapes or {}, prefix + "img_in.weight", 1)
    if width is not None and width != FLUX_IN_CHANNELS:
        raise UnsupportedLayout(_TOOL_INPUTS.get(width, f"a FLUX-style transformer with {width} input channels"))


def read_transformer_config(config_dir: Path | None) -> dict[str, Any]:
    """The transformer config a single file is built with: the companion's, else FLUX.1-schnell's shipped one."""
    folder = Path(config_dir) if config_dir is not None else shipped_config_dir("flux")
    path = folder / "transformer" / "config.json"
    if not path.is_file():
        path = shipped_config_dir("flux") / "transformer" / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def transformer_facts(shapes: Mapping[str, Any], cfg: Mapping[str, Any]) -> list[tuple[str, str, Any, Any]]:
    """(component, what, in the file, in the config) for everything that fixes a tensor's shape."""
    p = transformer_prefix(shapes) or ""
    heads, head_dim = cfg.get("num_attention_heads", 24), cfg.get("attention_head_dim", 128)
    return [
        ("transformer", "input channels", _dim(shapes, p + "img_in.weight", 1), cfg.get("in_channels", 64)),
        ("transformer", "width", _dim(shapes, p + "img_in.weight", 0), heads * head_dim),
        ("transformer", "head width", _dim(shapes, p + "double_blocks.0.img_attn.norm.query_norm.scale", 0), head_dim),
        ("transformer", "double blocks", count_blocks(shapes, p + "double_blocks.") or None, cfg.get("num_layers", 19)),
        ("transformer", "single blocks", count_blocks(shapes, p + "single_blocks.") or None,
         cfg.get("num_single_layers", 38)),
        ("transformer", "T5 width", _dim(shapes, p + "txt_in.weight", 1), cfg.get("joint_attention_dim", 4096)),
        ("transformer", "pooled CLIP width", _dim(shapes, p + "vector_in.in_layer.weight", 1),
         cfg.get("pooled_projection_dim", 768)),
        ("transformer", "guidance input", p + "guidance_in.in_layer.weight" in shapes,
         bool(cfg.get("guidance_embeds", False))),
    ]


def check_flux_file(shapes: Mapping[str, Any], config_dir: Path | None) -> None:
    """Refuse a FLUX.1 file without a companion folder, or whose transformer does not fit its config."""
    if config_dir is None:
        raise ValueError(COMPANION_HINT)
    config_dir = Path(config_dir)
    if not config_dir.is_dir() or family_of_pipeline_config(config_dir) != "flux":
        raise ValueError(f"its config folder {config_dir} is not a diffusers FLUX.1 folder (FluxPipeline "
                         f"model_index.json); {COMPANION_HINT}")
    found = mismatches(transformer_facts(shapes, read_transformer_config(config_dir)))
    if found:
        raise ValueError(f"{describe_mismatch(found, f'the config folder {config_dir}')}; use a companion folder "
                         "made for this model (FLUX.1-schnell and -dev differ in the guidance input)")


def variant_of_folder(folder: Path) -> str:
    """"base" for a FLUX.1 text-to-image folder; Fill/Depth transformers (other input widths) are refused."""
    config = Path(folder) / "transformer" / "config.json"
    try:
        width = json.loads(config.read_text(encoding="utf-8")).get("in_channels", FLUX_IN_CHANNELS)
    except (OSError, ValueError, AttributeError) as exc:
        raise ValueError(f"cannot read the transformer config {config}: {exc}") from None
    if width != FLUX_IN_CHANNELS:
        raise UnsupportedLayout(_TOOL_INPUTS.get(width, f"a FLUX-style transformer with {width} input channels"))
    return "base"


def max_sequence_length(transformer_config: Mapping[str, Any]) -> int:
    """How many T5 tokens the model reads: 256 for schnell (no guidance input), 512 for guidance-distilled dev."""
    return 512 if transformer_config.get("guidance_embeds") else 256


# -- BFL → diffusers names ------------------------------------------------------------------------------
