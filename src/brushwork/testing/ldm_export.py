"""Export a diffusers SD 1.5 / SDXL pipeline to the original LDM single-file key layout.

This is the reverse of what diffusers' `from_single_file` does. It exists so
tests can fabricate CivitAI-style `.safetensors` checkpoints (tiny random
ones for round trips, full-size ones on the `meta` device for layout checks)
without downloading anything. The mapping follows diffusers'
`scripts/convert_diffusers_to_original_stable_diffusion.py` and
`scripts/convert_diffusers_to_original_sdxl.py`, but is derived from each
model's config (block counts, layers per block) instead of being hard-coded
to the full-size layouts, so tiny test models map the same way.

Only views, `reshape`, `cat` and transposes are used, so it runs on `meta`
tensors too (key names and shapes are then all that matters).

Inpainting pipelines export the same way: their UNet's 9-channel `conv_in`
becomes `model.diffusion_model.input_blocks.0.0.weight` unchanged, which is
how real inpainting files (e.g. `sd-v1-5-inpainting`) are recognised.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "UNET_PREFIX",
    "VAE_PREFIX",
    "SD15_CLIP_PREFIX",
    "SDXL_CLIP_L_PREFIX",
    "SDXL_OPEN_CLIP_PREFIX",
    "SDXL_REFINER_OPEN_CLIP_PREFIX",
    "unet_to_ldm",
    "vae_to_ldm",
    "clip_to_ldm",
    "open_clip_to_ldm",
    "pipeline_to_ldm_state_dict",
    "save_single_file",
]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD15_CLIP_PREFIX = "cond_stage_model.transformer."
SDXL_CLIP_L_PREFIX = "conditioner.embedders.0.transformer."
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
SDXL_REFINER_OPEN_CLIP_PREFIX = "conditioner.embedders.0.model."

_UNET_RESNET_RENAMES = (
    ("norm1.", "in_layers.0."),
    ("conv1.", "in_layers.2."),
    ("norm2.", "out_layers.0."),
    ("conv2.", "out_layers.3."),
    ("time_emb_proj.", "emb_layers.1."),
    ("conv_shortcut.", "skip_connection."),
)
_UNET_TOP_LEVEL = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "class_embedding.linear_1.": "label_emb.0.0.",
    "class_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_VAE_ATTN_RENAMES = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}
_VAE_TOP_LEVEL = {
    "encoder.conv_in.": "encoder.conv_in.",
    "encoder.conv_out.": "encoder.conv_out.",
    "encoder.conv_norm_out.": "encoder.norm_out.",
    "decoder.conv_in.": "decoder.conv_in.",
    "decoder.conv_out.": "decoder.conv_out.",
    "decoder.conv_norm_out.": "decoder.norm_out.",
    "quant_conv.": "quant_conv.",
    "post_quant_conv.": "post_quant_conv.",
}
_OPEN_CLIP_LAYER_RENAMES = (
    ("self_attn.out_proj.", "attn.out_proj."),
    ("layer_norm1.", "ln_1."),
    ("layer_norm2.", "ln_2."),
    ("mlp.fc1.", "mlp.c_fc."),
    ("mlp.fc2.", "mlp.c_proj."),
)


def _cfg(module: Any, name: str) -> Any:
    config = module.config
    return config[name] if isinstance(config, dict) else getattr(config, name)


def _uniform_int(value: Any, what: str) -> int:
    if isinstance(value, int):
        return value
    values = set(value)
    if len(values) != 1:
        raise ValueError(f"{what} must be the same for every block to map to LDM, got {value!r}")
    return int(values.pop())


def _rename_prefix(rest: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if rest.startswith(old):
            return new + rest[len(old) :]
    return rest


def _unet_key(key: str, lpb: int, up_has_attn: list[bool]) -> str:
    """One diffusers UNet key -> its LDM name (without the `model.diffusion_model.` prefix)."""
    for hf, sd in _UNET_TOP_LEVEL.items():
        if key.startswith(hf):
            return sd + key[len(hf) :]
    step = lpb + 1
    if m := re.fullmatch(r"down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + i * step + j}.0.{_rename_prefix(rest, _UNET_RESNET_RENAMES)}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"input_blocks.{1 + i * step + j}.1.{rest}"
    if m := re.fullmatch(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        i, rest = int(m[1]), m[2]
        return f"input_blocks.{(i + 1) * step}.0.op.{rest}"
    if m := re.fullmatch(r"mid_block\.resnets\.(\d+)\.(.+)", key):
        j, rest = int(m[1]), m[2]
        return f"middle_block.{2 * j}.{_rename_prefix(rest, _UNET_RESNET_RENAMES)}"
    if m := re.fullmatch(r"mid_block\.attentions\.0\.(.+)", key):
        return f"middle_block.1.{m[1]}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{i * step + j}.0.{_rename_prefix(rest, _UNET_RESNET_RENAMES)}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.attentions\.(\d+)\.(.+)", key):
        i, j, rest = int(m[1]), int(m[2]), m[3]
        return f"output_blocks.{i * step + j}.1.{rest}"
    if m := re.fullmatch(r"up_blocks\.(\d+)\.upsamplers\.0\.(.+)", key):
        i, rest = int(m[1]), m[2]
        slot = 2 if up_has_attn[i] else 1
        return f"output_blocks.{i * step + lpb}.{slot}.{rest}"
    raise KeyError(f"no LDM name known for UNet key {key!r}")


def unet_to_ldm(unet: Any, prefix: str = UNET_PREFIX) -> dict[str, torch.Tensor]:
    """UNet2DConditionModel -> LDM `model.diffusion_model.*` tensors (same tensors, renamed)."""
    lpb = _uniform_int(_cfg(unet, "layers_per_block"), "layers_per_block")
    up_has_attn = ["CrossAttn" in t for t in _cfg(unet, "up_block_types")]
    return {prefix + _unet_key(k, lpb, up_has_attn): v for k, v in unet.state_dict().items()}


def _vae_key(key: str, num_blocks: int) -> tuple[str, bool]:
    """diffusers VAE key -> (LDM name, is a mid-block attention weight that LDM stores as 1x1 conv)."""
    for hf, sd in _VAE_TOP_LEVEL.items():
        if key.startswith(hf):
            return sd + key[len(hf) :], False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        rest = m[3].replace("conv_shortcut.", "nin_shortcut.")
        return f"encoder.down.{m[1]}.block.{m[2]}.{rest}", False
    if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
        return f"encoder.down.{m[1]}.downsample.conv.{m[2]}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
        rest = m[3].replace("conv_shortcut.", "nin_shortcut.")
        return f"decoder.up.{num_blocks - 1 - int(m[1])}.block.{m[2]}.{rest}", False
    if m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
        return f"decoder.up.{num_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
        rest = m[3].replace("conv_shortcut.", "nin_shortcut.")
        return f"{m[1]}.mid.block_{int(m[2]) + 1}.{rest}", False
    if m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", key):
        rest = _rename_prefix(m[2], tuple(_VAE_ATTN_RENAMES.items()))
        is_linear_weight = rest.endswith("weight") and not rest.startswith("norm.")
        return f"{m[1]}.mid.attn_1.{rest}", is_linear_weight
    raise KeyError(f"no LDM name known for VAE key {key!r}")


def vae_to_ldm(vae: Any, prefix: str = VAE_PREFIX) -> dict[str, torch.Tensor]:
    """AutoencoderKL -> LDM `first_stage_model.*`; attention projections become 1x1 convs as in LDM."""
    num_blocks = len(_cfg(vae, "block_out_channels"))
    out: dict[str, torch.Tensor] = {}
    for key, value in vae.state_dict().items():
        name, to_conv = _vae_key(key, num_blocks)
        out[prefix + name] = value.reshape(*value.shape, 1, 1) if to_conv and value.ndim == 2 else value
    return out


def _text_model_state(text_encoder: Any) -> dict[str, torch.Tensor]:
    """State dict with the `text_model.` prefix, whether or not this transformers version flattens it.

    transformers >= 5.6 flattened `CLIPTextModel` (no `text_model.` wrapper);
    `CLIPTextModelWithProjection` still has it. LDM files always carry it.
    """
    out = {}
    for key, value in text_encoder.state_dict().items():
        if key.startswith("text_model.") or key.startswith("text_projection."):
            out[key] = value
        else:
            out["text_model." + key] = value
    return out


def _position_ids(text_encoder: Any, like: torch.Tensor) -> torch.Tensor:
    n = int(_cfg(text_encoder, "max_position_embeddings"))
    return torch.arange(n, dtype=torch.int64, device=like.device).unsqueeze(0)


def clip_to_ldm(text_encoder: Any, prefix: str) -> dict[str, torch.Tensor]:
    """CLIP-L CLIPTextModel -> `<prefix>text_model.*`, plus the `position_ids` buffer real files carry."""
    state = _text_model_state(text_encoder)
    out = {prefix + k: v for k, v in state.items() if not k.startswith("text_projection.")}
    anchor = state["text_model.embeddings.position_embedding.weight"]
    out[prefix + "text_model.embeddings.position_ids"] = _position_ids(text_encoder, anchor)
    return out


def open_clip_to_ldm(text_encoder: Any, prefix: str = SDXL_OPEN_CLIP_PREFIX) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection (bigG) -> OpenCLIP names as SDXL stores them.

    q/k/v are fused into `attn.in_proj_weight`/`in_proj_bias` (nn.MultiheadAttention
    layout) and `text_projection` is stored transposed ([width, embed_dim]),
    because OpenCLIP computes `x @ text_projection` rather than a Linear.
    """
    state = _text_model_state(text_encoder)
    out: dict[str, torch.Tensor] = {}
    fused: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "text_model.embeddings.token_embedding.weight":
            out[prefix + "token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out[prefix + "positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out[prefix + "ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out[prefix + "text_projection"] = value.T.contiguous()
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)", key):
            fused.setdefault((m[1], m[3]), {})[m[2]] = value
        elif m := re.fullmatch(r"text_model\.encoder\.layers\.(\d+)\.(.+)", key):
            rest = _rename_prefix(m[2], _OPEN_CLIP_LAYER_RENAMES)
            out[f"{prefix}transformer.resblocks.{m[1]}.{rest}"] = value
        else:
            raise KeyError(f"no OpenCLIP name known for text encoder key {key!r}")
    for (layer, kind), parts in fused.items():
        out[f"{prefix}transformer.resblocks.{layer}.attn.in_proj_{kind}"] = torch.cat(
            [parts["q"], parts["k"], parts["v"]], dim=0
        )
    anchor = state["text_model.embeddings.position_embedding.weight"]
    # OpenCLIP's learned temperature; unused for diffusion but present in SDXL files. ln(100): CLIP's clamp.
    logit_scale = torch.empty((), dtype=anchor.dtype, device=anchor.device)
    if logit_scale.device.type != "meta":
        logit_scale.fill_(math.log(100.0))
    out[prefix + "logit_scale"] = logit_scale
    return out


def pipeline_to_ldm_state_dict(pipe: Any) -> dict[str, torch.Tensor]:
    """Whole SD 1.5 or SDXL pipeline -> one LDM/A1111-layout state dict.

    `pipe` is a StableDiffusion(XL)(Inpaint)Pipeline or anything with `unet`, `vae`,
    `text_encoder` (and `text_encoder_2` for SDXL) attributes, e.g. a
    SimpleNamespace of meta-device models. SDXL is recognised by a non-None
    `text_encoder_2`, its refiner by `text_encoder` None.
    """
    state: dict[str, torch.Tensor] = {}
    state.update(unet_to_ldm(pipe.unet))
    state.update(vae_to_ldm(pipe.vae))
    text_encoder_2 = getattr(pipe, "text_encoder_2", None)
    if text_encoder_2 is not None and getattr(pipe, "text_encoder", None) is None:
        # SDXL's refiner: OpenCLIP bigG alone, first (index 0) in its conditioner.
        state.update(open_clip_to_ldm(text_encoder_2, SDXL_REFINER_OPEN_CLIP_PREFIX))
    elif text_encoder_2 is None:
        state.update(clip_to_ldm(pipe.text_encoder, SD15_CLIP_PREFIX))
    else:
        state.update(clip_to_ldm(pipe.text_encoder, SDXL_CLIP_L_PREFIX))
        state.update(open_clip_to_ldm(text_encoder_2, SDXL_OPEN_CLIP_PREFIX))
    return state


def save_single_file(pipe: Any, path: Path, *, dtype: torch.dtype | None = None) -> Path:
    """Write `pipe` as a CivitAI-style single `.safetensors` file; returns the path.

    `dtype` (e.g. torch.float16, as most CivitAI uploads are) casts floating
    tensors only; integer buffers such as `position_ids` keep their type.
    """
    from safetensors.torch import save_file

    path = Path(path)
    state = pipeline_to_ldm_state_dict(pipe)
    tensors: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for key, value in state.items():
        if value.device.type == "meta":
            raise ValueError(f"cannot save meta tensor {key!r}: build the pipeline with real weights")
        tensor = value.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensor = tensor.contiguous()
        if tensor.data_ptr() in seen:  # safetensors refuses aliased storage
            tensor = tensor.clone()
        seen.add(tensor.data_ptr())
        tensors[key] = tensor
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
