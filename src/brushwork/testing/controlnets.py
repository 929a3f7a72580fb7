"""Tiny ControlNets matching the tiny pipelines of `brushwork.testing.factories`.

A ControlNet is a copy of its UNet's encoder half plus a small hint encoder
(conditioning image -> latent-sized features, 8x down) and "zero convs" that
feed its features into the UNet's skip connections. Real training starts
those zero convs at zero, so a freshly made ControlNet changes nothing; here
they get random (seeded) weights, so a non-zero conditioning scale visibly
changes the image and "scale 0 == no ControlNet" is a meaningful test.

The config follows the same conventions `brushwork.models.controlnet` uses
to derive a config from a single file's tensor shapes (SD 1.5: 8 attention
heads; SDXL: 64-wide heads and 256-wide time-id embedding), so a tiny
ControlNet saved as a single file loads back to exactly the same model.

`save_controlnet_single_file` writes the original LDM layout
(`control_model.*`, as lllyasviel's `control_v11p_sd15_canny.safetensors`):
the inverse of diffusers' `convert_controlnet_checkpoint`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch

from brushwork.models.controlnet import (
    LDM_PREFIX,
    SDXL_ADDITION_TIME_EMBED_DIM,
    attention_heads,
)

__all__ = [
    "HINT_CHANNELS",
    "controlnet_to_ldm",
    "save_controlnet",
    "save_controlnet_single_file",
    "tiny_controlnet",
]

# Four stages = three stride-2 convs = 8x down, as the VAE: the hint image becomes latent-sized.
HINT_CHANNELS = (16, 32, 48, 64)
_HINT_OUT = 14  # LDM index of the hint encoder's last conv (0 conv_in, 2..12 blocks, SiLUs between)


def _family_of_unet(unet: Any) -> Literal["sd15", "sdxl"]:
    return "sdxl" if unet.config.addition_embed_type == "text_time" else "sd15"


def tiny_controlnet(pipe: Any, seed: int = 0) -> Any:
    """A ControlNetModel for `pipe` (a tiny SD 1.5 or SDXL pipeline), with visible effect.

    The encoder starts as a copy of the UNet's (as real ControlNets do); the
    zero convs and the hint encoder's output conv get seeded random weights.
    The same `pipe` and `seed` give the same weights; the caller's RNG is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _tiny_controlnet(pipe.unet)


def _tiny_controlnet(unet: Any) -> Any:
    from diffusers import ControlNetModel

    cfg = unet.config
    family = _family_of_unet(unet)
    if cfg.norm_num_groups != 32:
        raise ValueError("the tiny ControlNet assumes norm_num_groups=32, as every SD model has")
    config: dict[str, Any] = dict(
        in_channels=cfg.in_channels,
        conditioning_channels=3,
        conditioning_embedding_out_channels=HINT_CHANNELS,
        down_block_types=tuple(cfg.down_block_types),
        mid_block_type=cfg.mid_block_type,
        block_out_channels=tuple(cfg.block_out_channels),
        layers_per_block=cfg.layers_per_block,
        transformer_layers_per_block=cfg.transformer_layers_per_block,
        cross_attention_dim=cfg.cross_attention_dim,
        use_linear_projection=cfg.use_linear_projection,
        attention_head_dim=tuple(attention_heads(family, cfg.block_out_channels)),
        norm_num_groups=cfg.norm_num_groups,
        upcast_attention=bool(cfg.upcast_attention),
    )
    if family == "sdxl":
        # The ControlNet embeds the same pooled text + 6 time ids as the UNet, at SDXL's 256 width.
        pooled = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        config.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=SDXL_ADDITION_TIME_EMBED_DIM,
            projection_class_embeddings_input_dim=6 * SDXL_ADDITION_TIME_EMBED_DIM + pooled,
        )
    controlnet = ControlNetModel(**config)
    # Start from the UNet's encoder, like ControlNet training does (head counts do not change shapes).
    for name in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        getattr(controlnet, name).load_state_dict(getattr(unet, name).state_dict())
    # Zero convs with weights: otherwise the ControlNet adds exactly nothing.
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]
    for conv in zero_convs:
        conv.reset_parameters()
    return controlnet.eval()


def save_controlnet(model: Any, folder: Path) -> Path:
    """Write a diffusers ControlNet folder (config.json + diffusion_pytorch_model.safetensors)."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def controlnet_to_ldm(model: Any, prefix: str = LDM_PREFIX) -> dict[str, torch.Tensor]:
    """ControlNetModel -> LDM-layout tensors (same tensors, renamed): the inverse of diffusers' converter.

    SDXL's add_embedding becomes `label_emb.0.*`, as in SDXL UNets.
    """
    from brushwork.testing.ldm_export import _unet_key, _uniform_int

    lpb = _uniform_int(model.config.layers_per_block, "layers_per_block")
    hint_blocks = len(model.controlnet_cond_embedding.blocks)
    if hint_blocks != 6:
        raise ValueError(f"the LDM layout has a 4-stage hint encoder (6 blocks), this model has {hint_blocks} blocks")
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        if head == "controlnet_down_blocks":
            index, _, param = rest.partition(".")
            name = f"zero_convs.{index}.0.{param}"
        elif head == "controlnet_mid_block":
            name = f"middle_block_out.0.{rest}"
        elif key.startswith("controlnet_cond_embedding.conv_in."):
            name = "input_hint_block.0." + key.rsplit(".", 1)[1]
        elif key.startswith("controlnet_cond_embedding.conv_out."):
            name = f"input_hint_block.{_HINT_OUT}." + key.rsplit(".", 1)[1]
        elif key.startswith("controlnet_cond_embedding.blocks."):
            index, param = key.split(".")[2:]
            name = f"input_hint_block.{2 * int(index) + 2}.{param}"
        else:
            name = _unet_key(key, lpb, [])
        out[prefix + name] = value
    return out


def save_controlnet_single_file(
    model: Any,
    path: Path,
    *,
    layout: Literal["ldm", "diffusers"] = "ldm",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write `model` as one `.safetensors` file, in the LDM layout or with diffusers key names.

    `ldm` is lllyasviel's `control_model.*` layout; `diffusers` is how most
    SDXL ControlNets are shipped as single files. `dtype` (e.g. torch.float16)
    casts floating tensors.
    """
    from safetensors.torch import save_file

    state = controlnet_to_ldm(model) if layout == "ldm" else dict(model.state_dict())
    tensors: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        tensor = value.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        tensors[key] = tensor.contiguous().clone()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
