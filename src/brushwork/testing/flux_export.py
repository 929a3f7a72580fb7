"""Export a diffusers `FluxTransformer2DModel` to Black Forest Labs' single-file key layout.

The reverse of `brushwork.models.flux.bfl_to_diffusers` (and of diffusers'
`convert_flux_transformer_checkpoint_to_diffusers`), so tests can fabricate
`flux1-schnell.safetensors`-style files (BFL: bare names) or ComfyUI-style
ones (`model.diffusion_model.` prefix) from tiny random models, and full-size
key layouts on the meta device. Only `cat`/`chunk` and renames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from brushwork.models.flux import (
    _DOUBLE_RENAMES,
    _SINGLE_RENAMES,
    _TOP_RENAMES,
    _swap_halves,
)


def _invert(renames: dict[str, str]) -> dict[str, str]:
    return {new: old for old, new in renames.items()}


def _rename(rest: str, renames: dict[str, str]) -> str:
    for old, new in renames.items():
        if rest.startswith(old):
            return new + rest[len(old):]
    raise KeyError(f"no BFL name known for FLUX.1 transformer key {rest!r}")


def transformer_to_bfl(transformer: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """FluxTransformer2DModel → BFL names (`double_blocks.N.img_attn.qkv.weight`, ...) under `prefix`."""
    state = transformer.state_dict()
    double, single, top = _invert(_DOUBLE_RENAMES), _invert(_SINGLE_RENAMES), _invert(_TOP_RENAMES)
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        block, _, tail = key.partition(".")
        if block in ("transformer_blocks", "single_transformer_blocks"):
            index, _, name = tail.partition(".")
            base = f"{'double_blocks' if block == 'transformer_blocks' else 'single_blocks'}.{index}."
            part, _, kind = name.rpartition(".")
            if block == "transformer_blocks" and part in ("attn.to_q", "attn.to_k", "attn.to_v"):
                fused.setdefault(f"{base}img_attn.qkv.{kind}", {})[part[-1]] = value
            elif block == "transformer_blocks" and part in ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"):
                fused.setdefault(f"{base}txt_attn.qkv.{kind}", {})[part[-6]] = value
            elif block == "single_transformer_blocks" and part in ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"):
                fused.setdefault(f"{base}linear1.{kind}", {})[part[-1] if part != "proj_mlp" else "m"] = value
            else:
                out[base + _rename(name, double if block == "transformer_blocks" else single)] = value
        elif key.startswith("norm_out.linear."):
            out["final_layer.adaLN_modulation.1." + key.rsplit(".", 1)[1]] = _swap_halves(value)
        else:
            out[_rename(key, top)] = value
    for name, parts in fused.items():
        order = "qkvm" if "m" in parts else "qkv"
        out[name] = torch.cat([parts[letter] for letter in order], dim=0)
    return {prefix + key: value for key, value in out.items()}


def save_flux_single_file(pipe: Any, path: Path, *, prefix: str = "") -> Path:
    """Write the pipeline's transformer as a BFL-layout (or, with `prefix`, ComfyUI-layout) `.safetensors`."""
    from safetensors.torch import save_file

    tensors = {key: value.detach().to("cpu").contiguous().clone()
               for key, value in transformer_to_bfl(pipe.transformer, prefix).items()}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
