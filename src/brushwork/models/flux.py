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

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable

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
    from brushwork.models.offline_configs import UnsupportedLayout

    names = set(names)
    prefix = transformer_prefix(names) or ""
    for label, marker in _RELATIVES:
        if marker in names or COMFY_PREFIX + marker in names:
            raise UnsupportedLayout(label)
    width = _dim(shapes or {}, prefix + "img_in.weight", 1)
    if width is not None and width != FLUX_IN_CHANNELS:
        raise UnsupportedLayout(_TOOL_INPUTS.get(width, f"a FLUX-style transformer with {width} input channels"))


def _dim(shapes: Mapping[str, Any], key: str, axis: int) -> int | None:
    from brushwork.models.offline_configs import _dim as dim

    return dim(shapes, key, axis)


def read_transformer_config(config_dir: Path | None) -> dict[str, Any]:
    """The transformer config a single file is built with: the companion's, else FLUX.1-schnell's shipped one."""
    from brushwork.models.offline_configs import shipped_config_dir

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
    from brushwork.models.offline_configs import count_blocks

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
    from brushwork.models.offline_configs import (
        describe_mismatch,
        family_of_pipeline_config,
        mismatches,
    )

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
    from brushwork.models.offline_configs import UnsupportedLayout

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

    from brushwork.models.loading import quiet_library_bars

    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    with quiet_library_bars():
        if path.is_dir():
            return diffusers.FluxPipeline.from_pretrained(str(path), **kwargs)
        if config is None:
            raise ModelUnavailable(f"{path.name}: {COMPANION_HINT}")
        transformer = load_transformer(path, config, torch_dtype)
        return diffusers.FluxPipeline.from_pretrained(str(config), transformer=transformer, **kwargs)
