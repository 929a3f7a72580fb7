"""Offline diffusers configs for single-file (LDM / A1111 layout) SD 1.5 and SDXL checkpoints.

`from_single_file` converts the weights itself, but it still needs the
diffusers-format *configs* of the pipeline it is building (model_index.json,
unet/vae/text-encoder configs, scheduler, tokenizer files). By default it
downloads them from the Hub, which we must never do. So we ship the configs
of `stable-diffusion-v1-5/stable-diffusion-v1-5` and
`stabilityai/stable-diffusion-xl-base-1.0` in the package, derive the
tokenizer vocab/merges from the open-clip wheel (see `clip_vocab`), and lay
them out in a cache folder that can be passed as `config=`.

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

from brushwork.contract.families import FAMILIES, Family
from brushwork.models.clip_vocab import bpe_file_path, write_clip_tokenizer_files

__all__ = [
    "Family",
    "FAMILIES",
    "PIPELINE_CLASS_BY_FAMILY",
    "shipped_config_dir",
    "detect_family",
    "missing_components",
    "read_checkpoint_keys",
    "read_checkpoint_shapes",
    "materialize_config_dir",
    "family_of_pipeline_config",
]


PIPELINE_CLASS_BY_FAMILY: dict[Family, str] = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}

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
    ("Flux", ("double_blocks.0.img_attn.norm.key_norm.scale",)),
    ("Stable Diffusion 3", ("joint_blocks.0.context_block.adaLN_modulation.1.bias",)),
    ("Stable Cascade", ("clip_txt_mapper.weight", "down_blocks.1.0.channelwise.0.weight")),
    ("a ControlNet", ("control_model.time_embed.0.weight", "controlnet_cond_embedding.conv_in.weight")),
    (
        "a diffusers-format UNet state dict (not an LDM single file)",
        ("conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"),
    ),
    ("a standalone VAE", ("encoder.conv_in.weight", "decoder.conv_out.weight")),
)

_SUPPORTED = "SD 1.x/1.5 (LDM layout) and SDXL base (LDM layout)"

_STAMP_NAME = ".brushwork-config-stamp"
_CONFIG_SUFFIXES = (".json",)


def shipped_config_dir(family: Family) -> Path:
    """Folder inside the installed package holding the JSON for `family`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    return Path(__file__).resolve().parent / "configs" / family


def _unsupported(what: str) -> ValueError:
    return ValueError(f"unsupported checkpoint layout: {what}. Supported: {_SUPPORTED}.")


def _shape(value: Any) -> tuple[int, ...]:
    """A shape from a shape sequence or from anything with `.shape` (a tensor, in a state dict)."""
    return tuple(int(d) for d in (value.shape if hasattr(value, "shape") else value))


def _in_channels(shapes: Mapping[str, Any] | None) -> int | None:
    if shapes is None or KEY_UNET_IN not in shapes:
        return None
    shape = _shape(shapes[KEY_UNET_IN])
    return shape[1] if len(shape) > 1 else None


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
    dict of tensors to also reject
    inpainting / instruct-pix2pix UNets (extra input channels) and an SD 2.x UNet
    by its 1024-wide cross-attention; with names only, SD 2.x is still caught by
    its OpenCLIP-H text encoder keys.

    Raises ValueError naming the layout for anything that is not SD1.5/SDXL base.
    """
    shapes: Mapping[str, Any] | None = keys if isinstance(keys, Mapping) else None
    names = set(keys)
    in_ch = _in_channels(shapes)

    def has_prefix(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in names)

    if KEY_PLAYGROUND in names:
        raise _unsupported("Playground v2.5 (EDM formulation)")
    if "v_pred" in names:
        raise _unsupported("v-prediction model (it carries a `v_pred` marker key)")

    if has_prefix(UNET_PREFIX):
        if KEY_XL_REFINER in names or has_prefix("conditioner.embedders.0.model."):
            raise _unsupported("SDXL refiner (OpenCLIP-only conditioner)")
        is_xl = (
            KEY_XL_BASE in names
            or has_prefix("conditioner.embedders.1.model.")
            or f"{UNET_PREFIX}label_emb.0.0.weight" in names
        )
        if is_xl:
            if in_ch is not None and in_ch != 4:
                raise _unsupported(f"SDXL inpainting / edit UNet ({in_ch} input channels)")
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
            if in_ch is not None and in_ch != 4:
                kind = {9: "inpainting", 8: "instruct-pix2pix"}.get(in_ch, "non-text-to-image")
                raise _unsupported(f"SD 1.x {kind} UNet ({in_ch} input channels)")
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


def missing_components(keys: Iterable[str], family: Family) -> list[str]:
    """Pipeline components whose weights are absent from the single file.

    Some CivitAI uploads ship without a VAE or text encoder; diffusers then fails
    late with a generic message. Callers can check this first and ask for a
    separate component instead.
    """
    names = set(keys)
    wanted: dict[str, str] = {"vae": KEY_VAE}
    if family == "sd15":
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
        raise ValueError(f"{path} is not a readable .safetensors file: {exc}") from exc


def read_checkpoint_keys(path: Path) -> list[str]:
    """Tensor names of a .safetensors file, read from its header (no tensor data loaded)."""
    with _safe_open(Path(path)) as fh:
        return list(fh.keys())


def read_checkpoint_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of a .safetensors file, from its header (no tensor data loaded)."""
    with _safe_open(Path(path)) as fh:
        return {key: tuple(int(d) for d in fh.get_slice(key).get_shape()) for key in fh.keys()}


def _shipped_files(family: Family) -> list[Path]:
    root = shipped_config_dir(family)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in _CONFIG_SUFFIXES)
    if not any(p.name == "model_index.json" for p in files):
        raise FileNotFoundError(f"shipped configs for {family!r} are missing from {root}")
    return files


def _tokenizer_dirs(family: Family) -> list[str]:
    root = shipped_config_dir(family)
    return sorted(p.parent.relative_to(root).as_posix() for p in root.glob("tokenizer*/tokenizer_config.json"))


def _stamp(family: Family) -> str:
    """Fingerprint of what a materialised folder must contain; changes when the package or BPE does."""
    root = shipped_config_dir(family)
    digest = hashlib.sha256(b"brushwork-offline-configs-v1\0")
    for path in _shipped_files(family):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    digest.update(bpe_file_path().read_bytes())
    return digest.hexdigest()


def _is_complete(folder: Path, family: Family, stamp: str) -> bool:
    try:
        if (folder / _STAMP_NAME).read_text(encoding="utf-8").strip() != stamp:
            return False
    except OSError:
        return False
    root = shipped_config_dir(family)
    needed = [folder / p.relative_to(root) for p in _shipped_files(family)]
    for tok in _tokenizer_dirs(family):
        needed += [folder / tok / "vocab.json", folder / tok / "merges.txt"]
    return all(p.is_file() for p in needed)


def _build(tmp: Path, family: Family, stamp: str) -> None:
    root = shipped_config_dir(family)
    for src in _shipped_files(family):
        dst = tmp / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    for tok in _tokenizer_dirs(family):
        write_clip_tokenizer_files(tmp / tok)
    # The stamp goes last: its presence marks the folder as complete.
    (tmp / _STAMP_NAME).write_text(stamp + "\n", encoding="utf-8")


def materialize_config_dir(family: Family, cache_dir: Path) -> Path:
    """Lay out a diffusers config folder for `family` under `cache_dir/configs/<family>`.

    The result is what `from_single_file(..., config=str(folder), local_files_only=True)`
    needs. The folder is built in a private temp dir and renamed into place,
    so a concurrent process either sees no folder or a complete one; if two
    race, the loser discards its copy and reuses the winner's. A stamp file
    (hash of the shipped JSON + BPE table) makes a folder left by an older
    brushwork version get rebuilt instead of reused.
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")
    parent = Path(cache_dir) / "configs"
    target = parent / family
    stamp = _stamp(family)
    if _is_complete(target, family, stamp):
        return target

    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{family}.", suffix=".tmp", dir=parent))
    try:
        _build(tmp, family, stamp)
        for _attempt in range(5):
            try:
                os.rename(tmp, target)  # atomic; fails if target exists and is non-empty
                return target
            except OSError:
                if _is_complete(target, family, stamp):
                    return target  # another process won the race with identical content
                # Stale or partial folder (older version, crash): move it aside, then retry.
                aside = parent / f".{family}.stale-{uuid.uuid4().hex}"
                try:
                    os.rename(target, aside)
                except OSError:
                    pass  # someone else moved / replaced it; just retry
                else:
                    shutil.rmtree(aside, ignore_errors=True)
        if _is_complete(target, family, stamp):
            return target
        raise OSError(f"could not place offline config folder at {target}")
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def family_of_pipeline_config(folder: Path) -> Family:
    """Family of a diffusers config folder, from `model_index.json`'s `_class_name`."""
    index = Path(folder) / "model_index.json"
    try:
        class_name = json.loads(index.read_text(encoding="utf-8")).get("_class_name")
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read pipeline config {index}: {exc}") from exc
    for family, name in PIPELINE_CLASS_BY_FAMILY.items():
        if class_name == name:
            return family
    supported = ", ".join(f"{name} ({fam})" for fam, name in PIPELINE_CLASS_BY_FAMILY.items())
    raise ValueError(f"unsupported pipeline class {class_name!r} in {index}; supported: {supported}")
