"""ControlNets for SD 1.5 and SDXL: recognise, check and load them offline.

A ControlNet in `models/controlnet/` is either a diffusers folder
(`config.json` + `diffusion_pytorch_model.safetensors`) or a single file, in
one of two key layouts:

* the original LDM layout (`control_model.input_blocks...`, `zero_convs`,
  `input_hint_block`), as lllyasviel's `control_v11p_sd15_canny.safetensors`
  (also without the `control_model.` prefix, as some re-uploads have it);
* diffusers key names in one file (`controlnet_cond_embedding...`), as most
  SDXL ControlNets are shipped (e.g. `diffusers_xl_canny_full.safetensors`).

A single file carries no config, and diffusers would fetch one from the hub.
Instead the config is *derived from the tensor shapes* (block widths, layers
per block, transformer depth, cross-attention width, add-embedding width),
plus the two facts that shapes cannot tell and that every SD ControlNet
shares with its base model: SD 1.5 attention uses 8 heads per block, SDXL
attention uses 64-wide heads, and SDXL's time-id embedding is 256 wide. The
derived config is written under `<home>/configs/controlnet/<digest>/` and
passed to `from_single_file(config=..., local_files_only=True)`, so any width
of ControlNet (full size, "mid"/"small" SDXL variants, tiny test models)
loads with no network.

Everything is checked from the file header before any weights load, so a
LoRA, a checkpoint or a T2I-Adapter dropped into `controlnet/` is a one-line
error naming the file, not a tensor size mismatch from deep inside diffusers.

No torch or diffusers import at module import time.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from brushwork.contract.families import FAMILIES, Family
from brushwork.errors import InvalidRequest, ModelUnavailable

__all__ = [
    "CONTROLNET_CLASS",
    "LDM_PREFIX",
    "ControlNetInfo",
    "attention_heads",
    "check_compatible",
    "controlnet_config_from_shapes",
    "controlnet_family",
    "inspect_controlnet",
    "load_controlnet",
    "to_diffusers_names",
]

CONTROLNET_CLASS = "ControlNetModel"
LDM_PREFIX = "control_model."
SDXL_ADDITION_TIME_EMBED_DIM = 256  # every SDXL UNet / ControlNet: 6 time ids x 256
SD15_ATTENTION_HEADS = 8
SDXL_HEAD_WIDTH = 64
SD2_CROSS_ATTENTION_DIM = 1024

Layout = Literal["diffusers-folder", "diffusers-file", "ldm-file"]
_SUPPORTED = "ControlNetModel for SD 1.5 or SDXL (diffusers folder, or a single file in LDM or diffusers key layout)"
_WEIGHTS = "diffusion_pytorch_model"


@dataclass(frozen=True)
class ControlNetInfo:
    """What a ControlNet path holds, read from its config or file header (no weights loaded)."""

    family: Family
    layout: Layout
    config: dict[str, Any] = field(default_factory=dict)  # diffusers ControlNetModel config
    has_label_emb: bool = False  # LDM file with SDXL's `label_emb` (diffusers' converter skips it)
    # A single file's tensor shapes under diffusers names (empty for a folder).
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict, repr=False, compare=False)


# -- helpers shared with the tiny factories ---------------------------------------


def attention_heads(family: Family, block_out_channels: tuple[int, ...] | list[int]) -> list[int]:
    """Heads per block as SD ControlNets have them (diffusers calls this `attention_head_dim`).

    Head counts are not visible in tensor shapes; SD 1.5 uses 8 heads at every
    width, SDXL uses 64-wide heads (320 -> 5, 640 -> 10, 1280 -> 20).
    """
    if family == "sd15":
        return [SD15_ATTENTION_HEADS] * len(block_out_channels)
    if family == "sdxl":
        return [max(1, int(c) // SDXL_HEAD_WIDTH) for c in block_out_channels]
    raise ValueError(f"unknown model family {family!r}; supported: {', '.join(FAMILIES)}")


def check_compatible(controlnet_family: Family, model_family: Family, name: str) -> None:
    """A ControlNet only works with the family it was trained for."""
    if controlnet_family != model_family:
        raise InvalidRequest(
            "control", f"ControlNet '{name}' is for {controlnet_family} but the model is {model_family}"
        )


# -- recognising a single file ----------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as fh:  # header only; no tensor data is read
                return {key: tuple(int(d) for d in fh.get_slice(key).get_shape()) for key in fh.keys()}
        except Exception as exc:  # SafetensorError, OSError, ...
            raise ValueError(f"not a readable .safetensors file ({_one_line(exc)})") from None
    # A pickle: only reached when the catalog allowed pickles.
    import torch

    try:
        state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as exc:
        raise ValueError(f"cannot read the file with torch.load(weights_only=True) ({_one_line(exc)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError("the file does not hold a state dict")
    return {k: tuple(v.shape) for k, v in state.items() if hasattr(v, "shape")}


def _not_a_controlnet(names: set[str]) -> str | None:
    """Name what a file that is not a ControlNet holds, for the error message."""

    def has(fragment: str) -> bool:
        return any(fragment in k for k in names)

    def prefix(p: str) -> bool:
        return any(k.startswith(p) for k in names)

    if not names:
        return "it holds no tensors"
    if prefix("adapter.") or prefix("body.0.") or has("adapter.body."):
        return "it is a T2I-Adapter, not a ControlNet"
    if any(k.startswith("lora_") or ".lora_" in k or ".lora." in k or "lora_down" in k for k in names):
        return "it is a LoRA; put it in loras/"
    if prefix("model.diffusion_model.") or prefix("conditioner.embedders.") or prefix("cond_stage_model."):
        return "it is a Stable Diffusion checkpoint; put it in checkpoints/"
    if (prefix("encoder.") and prefix("decoder.")) or prefix("first_stage_model."):
        return "it is a VAE; put it in vae/"
    if "conv_in.weight" in names and prefix("up_blocks."):
        return "it is a diffusers UNet, not a ControlNet"
    if prefix("emb_params") or has("string_to_param"):
        return "it is a textual-inversion embedding; put it in embeddings/"
    return None


def _unsupported_variant(names: set[str]) -> str | None:
    """ControlNet-like files brushwork cannot run; some share keys with real ControlNets, so check first."""

    def has(fragment: str) -> bool:
        return any(fragment in k for k in names)

    if "lora_controlnet" in names:
        return "a Control-LoRA (Stability AI); use a full ControlNet"
    if has("lllite"):
        return "a ControlNet-LLLite (kohya); use a full ControlNet"
    if has("task_embedding") or has("control_add_embedding") or has("transformer_layes"):
        return "a ControlNet Union (ControlNetUnionModel)"
    return None


def _file_layout(names: set[str]) -> tuple[Layout, str] | None:
    """(layout, prefix to strip) of a ControlNet single file, or None if it is none."""
    if any(k.startswith(LDM_PREFIX) for k in names):
        return "ldm-file", LDM_PREFIX
    if "input_hint_block.0.weight" in names and "time_embed.0.weight" in names:
        return "ldm-file", ""
    if "controlnet_cond_embedding.conv_in.weight" in names and "time_embedding.linear_1.weight" in names:
        if any(k.startswith("controlnet_down_blocks.") for k in names):
            return "diffusers-file", ""
    return None


_RESNET_FROM_LDM = (
    ("in_layers.0.", "norm1."),
    ("in_layers.2.", "conv1."),
    ("out_layers.0.", "norm2."),
    ("out_layers.3.", "conv2."),
    ("emb_layers.1.", "time_emb_proj."),
    ("skip_connection.", "conv_shortcut."),
)
_TOP_FROM_LDM = {
    "time_embed.0.": "time_embedding.linear_1.",
    "time_embed.2.": "time_embedding.linear_2.",
    "label_emb.0.0.": "add_embedding.linear_1.",
    "label_emb.0.2.": "add_embedding.linear_2.",
    "input_blocks.0.0.": "conv_in.",
    "middle_block_out.0.": "controlnet_mid_block.",
    "input_hint_block.0.": "controlnet_cond_embedding.conv_in.",
}
_HINT_OUT = 14  # diffusers' converter maps input_hint_block.14 to conv_out (the SD layout's 4-stage hint encoder)


def _resnet_from_ldm(rest: str) -> str:
    for old, new in _RESNET_FROM_LDM:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def to_diffusers_names(shapes: Mapping[str, Any], prefix: str = LDM_PREFIX) -> dict[str, Any]:
    """LDM ControlNet key names -> diffusers names (values passed through), as diffusers converts them.

    Keys outside `prefix` (e.g. a full SD model stored next to an old
    ControlNet) are dropped. Raises ValueError for an LDM layout diffusers
    cannot convert.
    """
    ldm = {k[len(prefix) :]: v for k, v in shapes.items() if k.startswith(prefix)}
    down_ops = sorted(
        int(m[1]) for k in ldm if (m := re.fullmatch(r"input_blocks\.(\d+)\.0\.op\.weight", k))
    )
    input_ids = {int(m[1]) for k in ldm if (m := re.match(r"input_blocks\.(\d+)\.", k))}
    lpb = down_ops[0] - 1 if down_ops else max(input_ids, default=1)
    if lpb < 1:
        raise ValueError("unsupported ControlNet layout: no resnets before the first downsampler")
    step = lpb + 1
    hint_ids = sorted({int(m[1]) for k in ldm if (m := re.match(r"input_hint_block\.(\d+)\.", k))})
    if hint_ids and hint_ids[-1] != _HINT_OUT:
        raise ValueError(
            f"unsupported ControlNet layout: its hint encoder ends at input_hint_block.{hint_ids[-1]}, "
            f"not .{_HINT_OUT} as in SD ControlNets"
        )
    out: dict[str, Any] = {}
    for key, value in ldm.items():
        name: str | None = None
        for old, new in _TOP_FROM_LDM.items():
            if key.startswith(old):
                name = new + key[len(old) :]
                break
        if name is None:
            if m := re.fullmatch(r"input_hint_block\.(\d+)\.(.+)", key):
                idx = int(m[1])
                name = (
                    f"controlnet_cond_embedding.conv_out.{m[2]}"
                    if idx == _HINT_OUT
                    else f"controlnet_cond_embedding.blocks.{idx // 2 - 1}.{m[2]}"
                )
            elif m := re.fullmatch(r"zero_convs\.(\d+)\.0\.(.+)", key):
                name = f"controlnet_down_blocks.{m[1]}.{m[2]}"
            elif m := re.fullmatch(r"input_blocks\.(\d+)\.(\d)\.(.+)", key):
                n, slot, rest = int(m[1]), int(m[2]), m[3]
                i, j = (n - 1) // step, (n - 1) % step
                if j == lpb and rest.startswith("op."):
                    name = f"down_blocks.{i}.downsamplers.0.conv.{rest[3:]}"
                elif slot == 0:
                    name = f"down_blocks.{i}.resnets.{j}.{_resnet_from_ldm(rest)}"
                else:
                    name = f"down_blocks.{i}.attentions.{j}.{rest}"
            elif m := re.fullmatch(r"middle_block\.(\d+)\.(.+)", key):
                n, rest = int(m[1]), m[2]
                if n % 2 == 0:
                    name = f"mid_block.resnets.{n // 2}.{_resnet_from_ldm(rest)}"
                else:
                    name = f"mid_block.attentions.0.{rest}"
        if name is None:
            raise ValueError(f"unsupported ControlNet layout: no diffusers name for LDM key {prefix}{key!r}")
        out[name] = value
    return out


def _indices(names: set[str], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m[1]) for k in names if (m := rx.match(k))})


def controlnet_config_from_shapes(shapes: Mapping[str, tuple[int, ...]]) -> tuple[Family, dict[str, Any]]:
    """Family and diffusers `ControlNetModel` config of diffusers-named ControlNet tensor shapes.

    Raises ValueError naming the problem when the shapes are no SD 1.5/SDXL ControlNet.
    """
    names = set(shapes)

    def shape(key: str) -> tuple[int, ...]:
        if key not in shapes:
            raise ValueError(f"unsupported ControlNet layout: it has no tensor {key!r}")
        return tuple(shapes[key])

    if any(k.startswith("class_embedding.") for k in names) or any(k.startswith("encoder_hid_proj.") for k in names):
        raise ValueError("unsupported ControlNet layout: class / encoder-hidden projections (not SD 1.5 or SDXL)")
    c0, in_channels = shape("conv_in.weight")[:2]
    if in_channels != 4:
        raise ValueError(f"unsupported ControlNet layout: {in_channels} latent input channels (SD uses 4)")
    cond_out, conditioning_channels = shape("controlnet_cond_embedding.conv_in.weight")[:2]
    hint_blocks = _indices(names, r"controlnet_cond_embedding\.blocks\.(\d+)\.weight$")
    if len(hint_blocks) % 2 or hint_blocks != list(range(len(hint_blocks))):
        raise ValueError("unsupported ControlNet layout: its hint encoder blocks are not (conv, strided conv) pairs")
    hint_channels = [cond_out] + [shape(f"controlnet_cond_embedding.blocks.{k}.weight")[0] for k in hint_blocks[1::2]]
    if len(hint_channels) != 4:
        raise ValueError(
            f"unsupported ControlNet layout: its hint encoder downscales {2 ** (len(hint_channels) - 1)}x, not 8x"
        )

    blocks = _indices(names, r"down_blocks\.(\d+)\.")
    if not blocks or blocks != list(range(len(blocks))):
        raise ValueError("unsupported ControlNet layout: no down blocks")
    block_out = [shape(f"down_blocks.{i}.resnets.0.conv1.weight")[0] for i in blocks]
    layers = _indices(names, r"down_blocks\.0\.resnets\.(\d+)\.")
    layers_per_block = len(layers)
    down_types: list[str] = []
    depth: list[int] = []
    cross_dims: set[int] = set()
    linear_proj: set[bool] = set()
    for i in blocks:
        if len(_indices(names, rf"down_blocks\.{i}\.resnets\.(\d+)\.")) != layers_per_block:
            raise ValueError("unsupported ControlNet layout: blocks with different numbers of layers")
        if any(k.startswith(f"down_blocks.{i}.attentions.") for k in names):
            down_types.append("CrossAttnDownBlock2D")
            depth.append(len(_indices(names, rf"down_blocks\.{i}\.attentions\.0\.transformer_blocks\.(\d+)\.")))
        else:
            down_types.append("DownBlock2D")
            depth.append(1)
    for key, value in shapes.items():
        if key.endswith("attn2.to_k.weight"):
            cross_dims.add(int(value[1]))
        elif key.endswith(".proj_in.weight"):
            linear_proj.add(len(value) == 2)
    mid_depth = len(_indices(names, r"mid_block\.attentions\.0\.transformer_blocks\.(\d+)\."))
    if any(k.startswith("mid_block.attentions.") for k in names):
        mid_type = "UNetMidBlock2DCrossAttn"
        if down_types[-1] == "DownBlock2D":
            depth[-1] = mid_depth  # diffusers gives the mid block the last block's depth
        elif depth[-1] != mid_depth:
            raise ValueError("unsupported ControlNet layout: mid block depth differs from the last block's")
    else:
        mid_type = "UNetMidBlock2D"
    if len(cross_dims) > 1 or len(linear_proj) > 1:
        raise ValueError("unsupported ControlNet layout: mixed attention widths or projections")
    cross_attention_dim = cross_dims.pop() if cross_dims else 768
    if "controlnet_mid_block.weight" not in names:
        raise ValueError("unsupported ControlNet layout: it has no controlnet_mid_block")

    config: dict[str, Any] = {
        "_class_name": CONTROLNET_CLASS,
        "in_channels": in_channels,
        "conditioning_channels": conditioning_channels,
        "conditioning_embedding_out_channels": hint_channels,
        "block_out_channels": block_out,
        "down_block_types": down_types,
        "mid_block_type": mid_type,
        "layers_per_block": layers_per_block,
        "transformer_layers_per_block": depth,
        "cross_attention_dim": cross_attention_dim,
        "use_linear_projection": bool(linear_proj.pop()) if linear_proj else False,
        "norm_num_groups": 32,
        "controlnet_conditioning_channel_order": "rgb",
        "global_pool_conditions": False,
    }
    if block_out[0] != c0:
        raise ValueError("unsupported ControlNet layout: conv_in and the first block differ in width")
    if "add_embedding.linear_1.weight" in names:
        family: Family = "sdxl"
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=SDXL_ADDITION_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=shape("add_embedding.linear_1.weight")[1],
        )
    elif cross_attention_dim == SD2_CROSS_ATTENTION_DIM:
        raise ValueError("unsupported ControlNet layout: Stable Diffusion 2.x (1024-wide cross-attention)")
    else:
        family = "sd15"
    config["attention_head_dim"] = attention_heads(family, block_out)
    return family, config


def _folder_info(path: Path) -> ControlNetInfo:
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError("the folder has no config.json (not a diffusers ControlNet folder)") from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read config.json ({_one_line(exc)})") from None
    if not isinstance(config, dict):
        raise ValueError("config.json does not hold an object")
    class_name = config.get("_class_name")
    if class_name != CONTROLNET_CLASS:
        if (path / "model_index.json").is_file():
            raise ValueError("it is a diffusers pipeline (a checkpoint); put it in checkpoints/")
        raise ValueError(f"config.json names {class_name!r}; supported: {_SUPPORTED}")
    if config.get("addition_embed_type") == "text_time":
        family: Family = "sdxl"
    elif config.get("addition_embed_type") is not None or config.get("class_embed_type") is not None:
        raise ValueError("unsupported ControlNet: not an SD 1.5 or SDXL ControlNet (extra embeddings)")
    elif config.get("cross_attention_dim") == SD2_CROSS_ATTENTION_DIM:
        raise ValueError("unsupported ControlNet: Stable Diffusion 2.x (1024-wide cross-attention)")
    else:
        family = "sd15"
    if config.get("in_channels", 4) != 4:
        raise ValueError(f"unsupported ControlNet: {config.get('in_channels')} latent input channels (SD uses 4)")
    return ControlNetInfo(family, "diffusers-folder", config)


def _file_info(path: Path) -> ControlNetInfo:
    shapes = _read_shapes(path)
    names = set(shapes)
    variant = _unsupported_variant(names)
    if variant is not None:
        raise ValueError(f"unsupported ControlNet: {variant}. Supported: {_SUPPORTED}")
    found = _file_layout(names)
    if found is None:
        what = _not_a_controlnet(names)
        if what is None:
            sample = ", ".join(sorted(names)[:3])
            what = f"unrecognised key layout (e.g. {sample})"
        raise ValueError(f"not a ControlNet: {what}")
    layout, prefix = found
    if layout == "ldm-file":
        diffusers_shapes = to_diffusers_names(shapes, prefix)
        has_label_emb = any(k.startswith(prefix + "label_emb.") for k in names)
    else:
        diffusers_shapes, has_label_emb = dict(shapes), False
    family, config = controlnet_config_from_shapes(diffusers_shapes)
    return ControlNetInfo(family, layout, config, has_label_emb, diffusers_shapes)


def inspect_controlnet(path: Path) -> ControlNetInfo:
    """Family, layout and diffusers config of a ControlNet folder or single file; no weights are loaded.

    Raises `ModelUnavailable` with one line naming the file and the reason.
    """
    path = Path(path)
    try:
        if path.is_dir():
            return _folder_info(path)
        if not path.is_file():
            raise ValueError("no such file or folder")
        return _file_info(path)
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None


def controlnet_family(path: Path) -> Family:
    """Which family ('sd15' or 'sdxl') a ControlNet folder or single file is for."""
    return inspect_controlnet(path).family


# -- loading ----------------------------------------------------------------------


def _config_dir(config: Mapping[str, Any], home: Path) -> Path:
    """A folder holding `config` as config.json, under `home/configs/controlnet/<digest>` (atomic, shared)."""
    text = json.dumps(dict(config), indent=2, sort_keys=True) + "\n"
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(home) / "configs" / "controlnet" / digest
    target = folder / "config.json"
    try:
        if target.read_text(encoding="utf-8") == text:
            return folder
    except OSError:
        pass
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".config.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)  # atomic: a concurrent reader sees no file or a whole one
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return folder


def _load_state(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return dict(state)


def _single_file_source(path: Path, info: ControlNetInfo) -> Any:
    """What to hand to `from_single_file`: the path, or a state dict diffusers can map entirely.

    diffusers' own LDM converter skips SDXL's `label_emb` (add_embedding), and
    `from_single_file` reads pickles with its own loader; both cases get a
    diffusers-named state dict instead.
    """
    if info.layout == "ldm-file" and info.has_label_emb:
        state = _load_state(path)
        prefix = LDM_PREFIX if any(k.startswith(LDM_PREFIX) for k in state) else ""
        return to_diffusers_names(state, prefix)
    if path.suffix.lower() != ".safetensors":
        return _load_state(path)
    return str(path)


def _check_complete(info: ControlNetInfo) -> None:
    """Every tensor the derived architecture needs is in the file, with the right shape (meta model, no weights)."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    from brushwork.models.loading import quiet_dtype_notice

    with init_empty_weights(), quiet_dtype_notice():
        expected = {k: tuple(v.shape) for k, v in ControlNetModel.from_config(info.config).state_dict().items()}
    missing = sorted(set(expected) - set(info.shapes))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ValueError(f"the file is incomplete: it has no weights for {shown}")
    for key, shape in expected.items():
        if tuple(info.shapes[key]) != shape:
            raise ValueError(f"tensor {key} has shape {tuple(info.shapes[key])}, expected {shape}")


def _unloaded(model: Any) -> list[str]:
    tensors = list(model.named_parameters()) + list(model.named_buffers())
    return [name for name, t in tensors if t.device.type == "meta"]


def _folder_kwargs(path: Path, allow_pickle: bool) -> dict[str, Any]:
    if (path / f"{_WEIGHTS}.safetensors").is_file():
        return {"use_safetensors": True}
    if (path / f"{_WEIGHTS}.fp16.safetensors").is_file():
        return {"use_safetensors": True, "variant": "fp16"}
    if any(path.glob(f"{_WEIGHTS}*.safetensors")):  # sharded
        return {"use_safetensors": True}
    pickles = sorted(p.name for p in path.glob(f"{_WEIGHTS}*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    if not pickles:
        raise ValueError(f"the folder has no weights ({_WEIGHTS}.safetensors)")
    if not allow_pickle:
        raise ValueError(
            f"the folder has only pickle weights ({pickles[0]}), which can run code when loaded; convert them to "
            ".safetensors, or set BRUSHWORK_ALLOW_PICKLE=1"
        )
    return {"use_safetensors": False}


def load_controlnet(
    path: Path,
    family: Family,
    *,
    torch_dtype: Any,
    home: Path,
    allow_pickle: bool = False,
) -> Any:
    """Load a `ControlNetModel` from a diffusers folder or a single file, without touching the network.

    `family` is what the caller expects (from `controlnet_family` or the
    catalog); a file for the other family is a `ModelUnavailable`. A single
    file's config is derived from its tensor shapes and written under
    `home/configs/controlnet/`. Any diffusers/torch failure becomes a
    `ModelUnavailable` naming the file.
    """
    from brushwork.models.loading import quiet_dtype_notice, quiet_library_bars

    path = Path(path)
    info = inspect_controlnet(path)
    if info.family != family:
        raise ModelUnavailable(f"{path.name}: it is a ControlNet for {info.family}, not {family}")
    # Checks with our own one-line reasons, before diffusers is asked to load anything.
    try:
        if info.layout == "diffusers-folder":
            folder_kwargs = _folder_kwargs(path, allow_pickle)
        else:
            if path.suffix.lower() != ".safetensors" and not allow_pickle:
                raise ValueError("it is a pickle file, which can run code when loaded; convert it to .safetensors")
            _check_complete(info)
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None
    try:
        from diffusers import ControlNetModel

        with quiet_library_bars(), quiet_dtype_notice():
            if info.layout == "diffusers-folder":
                model = ControlNetModel.from_pretrained(
                    str(path), dtype=torch_dtype, local_files_only=True, **folder_kwargs
                )
            else:
                model = ControlNetModel.from_single_file(
                    _single_file_source(path, info),
                    config=str(_config_dir(info.config, home)),
                    dtype=torch_dtype,
                    local_files_only=True,
                )
    except (OSError, ValueError, KeyError, RuntimeError, TypeError, AttributeError, NotImplementedError) as exc:
        raise ModelUnavailable(
            f"{path.name}: could not load the ControlNet ({type(exc).__name__}: {_one_line(exc)})"
        ) from exc
    missing = _unloaded(model)
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise ModelUnavailable(f"{path.name}: the file has no weights for {shown}")
    return model.eval()
