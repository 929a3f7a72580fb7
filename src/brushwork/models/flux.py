"""FLUX.1 models: recognise, check and load them offline.

A FLUX.1 "single file" is, in practice, the transformer alone: Black Forest
Labs' `flux1-schnell.safetensors` holds `double_blocks.*`, `single_blocks.*`,
`img_in`, `txt_in`, ... and nothing else; ComfyUI/Forge "checkpoints" store
the same tensors under `model.diffusion_model.` (and may bundle CLIP-L, T5-XXL
and the VAE next to them). The text encoders need tokenizers that cannot be
shipped (T5's sentencepiece model), so a single file is always loaded
together with a *companion* diffusers folder (`models.NAME.config`) that
holds `text_encoder/`, `text_encoder_2/`, `tokenizer/`, `tokenizer_2/`,
`vae/`, `scheduler/` and `model_index.json` — e.g. the FLUX.1-schnell
snapshot without its transformer weights. Tensors bundled in the file besides
the transformer are not read.

diffusers 0.42's `convert_flux_transformer_checkpoint_to_diffusers` hard-codes
the full-size width (3072), so brushwork converts BFL names itself, with the
sizes read from the file; `tests/models/test_flux_models.py` pins the result to
diffusers' converter at full size. Nothing heavy is imported at module import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.offline_configs import (  # noqa: F401  (FLUX.1 layout facts live with the others)
    COMFY_PREFIX,
    COMPANION_HINT,
    FLUX_IN_CHANNELS,
    FLUX_MARKER,
    check_flux_file,
    is_flux_layout,
    max_sequence_length,
    read_transformer_config,
    refuse_relatives,
    transformer_facts,
    transformer_prefix,
    variant_of_folder,
)


def _swap_halves(tensor: Any) -> Any:
    """BFL's final adaLN stores (shift, scale); diffusers' AdaLayerNormContinuous wants (scale, shift)."""
    import torch

    first, second = tensor.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


_DOUBLE_RENAMES = {
    "img_mod.lin.": "norm1.linear.", "txt_mod.lin.": "norm1_context.linear.",
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight", "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
    "img_mlp.0.": "ff.net.0.proj.", "img_mlp.2.": "ff.net.2.",
    "txt_mlp.0.": "ff_context.net.0.proj.", "txt_mlp.2.": "ff_context.net.2.",
    "img_attn.proj.": "attn.to_out.0.", "txt_attn.proj.": "attn.to_add_out.",
}
_SINGLE_RENAMES = {
    "modulation.lin.": "norm.linear.", "norm.query_norm.scale": "attn.norm_q.weight",
    "norm.key_norm.scale": "attn.norm_k.weight", "linear2.": "proj_out.",
}
_TOP_RENAMES = {
    "time_in.in_layer.": "time_text_embed.timestep_embedder.linear_1.",
    "time_in.out_layer.": "time_text_embed.timestep_embedder.linear_2.",
    "vector_in.in_layer.": "time_text_embed.text_embedder.linear_1.",
    "vector_in.out_layer.": "time_text_embed.text_embedder.linear_2.",
    "guidance_in.in_layer.": "time_text_embed.guidance_embedder.linear_1.",
    "guidance_in.out_layer.": "time_text_embed.guidance_embedder.linear_2.",
    "txt_in.": "context_embedder.", "img_in.": "x_embedder.", "final_layer.linear.": "proj_out.",
}


def _renamed(rest: str, renames: Mapping[str, str]) -> str | None:
    for old, new in renames.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    return None


def bfl_to_diffusers(state: Mapping[str, Any], inner_dim: int) -> dict[str, Any]:
    """A BFL/ComfyUI FLUX.1 transformer state dict in `FluxTransformer2DModel` names.

    The same mapping as diffusers' converter, with the width `inner_dim`
    (heads x head width) given instead of fixed at 3072; tensors bundled for
    other components (ComfyUI's `text_encoders.*`, `vae.*`, ...: anything
    outside `model.diffusion_model.` when the file uses it) are left out. Only
    views, `split` and `cat`: it runs on meta tensors too.
    """
    prefix = transformer_prefix(state) or ""
    out: dict[str, Any] = {}
    for key, value in state.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        block, _, tail = rest.partition(".")
        if block == "double_blocks":
            index, _, name = tail.partition(".")
            target = f"transformer_blocks.{index}."
            if name.startswith(("img_attn.qkv.", "txt_attn.qkv.")):
                parts = ("to_q", "to_k", "to_v") if name.startswith("img") else ("add_q_proj", "add_k_proj",
                                                                                  "add_v_proj")
                for part, chunk in zip(parts, value.chunk(3, dim=0), strict=True):
                    out[f"{target}attn.{part}.{name.rsplit('.', 1)[1]}"] = chunk
                continue
            renamed = _renamed(name, _DOUBLE_RENAMES)
        elif block == "single_blocks":
            index, _, name = tail.partition(".")
            target = f"single_transformer_blocks.{index}."
            if name.startswith("linear1."):
                mlp = value.shape[0] - 3 * inner_dim
                parts = value.split([inner_dim, inner_dim, inner_dim, mlp], dim=0)
                for part, chunk in zip(("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"), parts, strict=True):
                    out[f"{target}{part}.{name.rsplit('.', 1)[1]}"] = chunk
                continue
            renamed = _renamed(name, _SINGLE_RENAMES)
        elif rest.startswith("final_layer.adaLN_modulation.1."):
            out["norm_out.linear." + rest.rsplit(".", 1)[1]] = _swap_halves(value)
            continue
        else:
            target, renamed = "", _renamed(rest, _TOP_RENAMES)
        if renamed is None:
            raise KeyError(f"no diffusers name known for FLUX.1 tensor {key!r}")
        out[target + renamed] = value
    return out


# -- loading -------------------------------------------------------------------------------------------


def _read_state(path: Path) -> dict[str, Any]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def load_transformer(path: Path, config_dir: Path | None, torch_dtype: Any) -> Any:
    """A `FluxTransformer2DModel` from a BFL/ComfyUI single file, built on the meta device and filled from the file."""
    import torch
    from diffusers import FluxTransformer2DModel

    cfg = read_transformer_config(config_dir)
    with torch.device("meta"):
        model = FluxTransformer2DModel.from_config(cfg)
    # clone(): each weight in storage of its own, not a view into the file's fused qkv/linear1 tensors
    state = {key: value.to(torch_dtype).clone() for key, value in
             bfl_to_diffusers(_read_state(path), model.inner_dim).items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model


def load_flux_pipeline(path: Path, *, torch_dtype: Any, config: Path | None = None) -> Any:
    """A FluxPipeline from a diffusers folder, or from a single file plus its companion folder (`config`)."""
    import diffusers

    from brushwork.models.quiet import quiet_library_bars

    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    with quiet_library_bars():
        if path.is_dir():
            return diffusers.FluxPipeline.from_pretrained(str(path), **kwargs)
        if config is None:
            raise ModelUnavailable(f"{path.name}: {COMPANION_HINT}")
        transformer = load_transformer(path, config, torch_dtype)
        return diffusers.FluxPipeline.from_pretrained(str(config), transformer=transformer, **kwargs)
