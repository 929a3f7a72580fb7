"""Tiny random textual-inversion embedding files, in every layout brushwork reads.

Widths fit the tiny models: SD 1.5's text encoder is 32 wide; the tiny
SDXL's are 32 (clip_l) and 64 (clip_g). Real files are 768 / 768 + 1280 wide.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Layout = Literal["emb_params", "single", "sdxl", "a1111_pt", "diffusers_bin"]
TINY_SD15_WIDTH = 32
TINY_SDXL_WIDTHS = (32, 64)


def save_tiny_embedding(path: Path, layout: Layout = "emb_params", *, widths: tuple[int, ...] | None = None,
                        vectors: int = 2, seed: int = 0) -> Path:
    """Write a random embedding of `vectors` vectors (one tensor per width) in `layout`; returns `path`.

    emb_params / single / sdxl are .safetensors (A1111-civitai, any single
    tensor, SDXL clip_l + clip_g); a1111_pt and diffusers_bin are pickles
    (A1111's `string_to_param` dict, diffusers' `{token: tensor}`).
    """
    import torch

    if widths is None:
        widths = TINY_SDXL_WIDTHS if layout == "sdxl" else (TINY_SD15_WIDTH,)
    generator = torch.Generator().manual_seed(seed)
    tensors = [torch.randn(vectors, width, generator=generator) for width in widths]
    path.parent.mkdir(parents=True, exist_ok=True)
    if layout == "sdxl":
        if len(tensors) != 2:
            raise ValueError("an SDXL embedding has two widths (clip_l, clip_g)")
        _save_safetensors({"clip_l": tensors[0], "clip_g": tensors[1]}, path)
    elif layout == "emb_params":
        _save_safetensors({"emb_params": tensors[0]}, path)
    elif layout == "single":
        _save_safetensors({"<tiny-concept>": tensors[0]}, path)
    elif layout == "a1111_pt":
        torch.save({"string_to_token": {"*": 265}, "string_to_param": {"*": tensors[0]},
                    "name": path.stem, "step": 0}, path)
    elif layout == "diffusers_bin":
        torch.save({"<tiny-concept>": tensors[0]}, path)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return path


def _save_safetensors(tensors: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in tensors.items()}, str(path))
