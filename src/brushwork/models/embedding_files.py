"""What a textual-inversion embedding file holds, told from its layout (no torch needed for .safetensors).

Layouts in the wild, all understood here:

* A1111 / civitai `.safetensors`: one tensor `emb_params` of shape (vectors, width);
* any `.safetensors` or diffusers `{token: tensor}` file with a single tensor;
* SDXL `.safetensors`: `clip_l` (vectors, 768) and `clip_g` (vectors, 1280), one per text encoder;
* A1111 `.pt`: `{"string_to_param": {"*": tensor}, ...}` (pickle: only when allowed).

`embedding_layout` picks the tensors (in text-encoder order) from names and
shapes alone, so the resolver can refuse an SD 1.5 embedding on SDXL from the
header before any engine loads it, and the engine uses the very same rule.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

# A prompt chunk holds 75 tokens: an embedding longer than that cannot be placed.
MAX_VECTORS = 75
SDXL_KEYS = ("clip_l", "clip_g")
_HEADER_LIMIT = 100 * 1024 * 1024


@dataclass(frozen=True)
class EmbeddingShape:
    """How many vectors an embedding puts in a prompt, and their width per text encoder."""

    vectors: int
    widths: tuple[int, ...]


def embedding_layout(shapes: dict[str, tuple[int, ...]]) -> tuple[list[str], EmbeddingShape]:
    """The tensor names to use, one per text encoder, and the shape; ValueError (one line) when unusable."""
    if all(key in shapes for key in SDXL_KEYS):
        keys = list(SDXL_KEYS)
    elif "emb_params" in shapes:
        keys = ["emb_params"]
    elif len(shapes) == 1:
        keys = list(shapes)
    elif not shapes:
        raise ValueError("holds no tensors")
    else:
        sample = ", ".join(sorted(shapes)[:3])
        raise ValueError(f"holds {len(shapes)} tensors ({sample}...), not one textual-inversion embedding")
    counts, widths = [], []
    for key in keys:
        shape = tuple(shapes[key])
        if len(shape) == 1:
            shape = (1, *shape)
        if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"tensor {key!r} has shape {list(shape)}, not (vectors, width)")
        counts.append(shape[0])
        widths.append(shape[1])
    if len(set(counts)) > 1:
        raise ValueError(f"its tensors hold different numbers of vectors ({', '.join(map(str, counts))})")
    if counts[0] > MAX_VECTORS:
        raise ValueError(f"has {counts[0]} vectors; at most {MAX_VECTORS} fit in a prompt chunk")
    return keys, EmbeddingShape(counts[0], tuple(widths))


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape from a .safetensors header (8-byte length + JSON); ValueError when unreadable."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ValueError("not a readable .safetensors file (too short)")
            (size,) = struct.unpack("<Q", raw)
            if size > _HEADER_LIMIT:
                raise ValueError("not a readable .safetensors file (header too large)")
            header = json.loads(fh.read(size))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"not a readable .safetensors file ({type(exc).__name__})") from None
    if isinstance(header, dict):
        return {key: tuple(int(d) for d in value["shape"]) for key, value in header.items()
                if key != "__metadata__" and isinstance(value, dict) and "shape" in value}
    raise ValueError("not a readable .safetensors file (bad header)")


def pickle_tensors(data: object) -> dict[str, object]:
    """The tensors of a torch.load()ed embedding, flat by name (A1111's `string_to_param`, or top level)."""
    params = data.get("string_to_param") if isinstance(data, dict) else None
    if isinstance(params, dict):
        if len(params) == 1:
            return dict(params)
        raise ValueError(f"holds {len(params)} terms in string_to_param; an embedding file holds one")
    if isinstance(data, dict):
        return {str(key): value for key, value in data.items() if hasattr(value, "shape")}
    raise ValueError("holds no tensors by name (not an embedding file)")


def read_embedding_shape(path: Path) -> EmbeddingShape:
    """The shape of an embedding file; ValueError (one line) when it is no usable embedding.

    Pickle files (.pt/.bin) are read with torch.load(weights_only=True) onto
    the meta device: call this for them only where pickles are allowed.
    """
    if path.suffix.lower() == ".safetensors":
        shapes = safetensors_shapes(path)
    else:
        shapes = _pickle_shapes(path)
    return embedding_layout(shapes)[1]


def embedding_widths(path: Path) -> tuple[int, ...]:
    """The vector width for each text encoder the file serves: (768,) for SD 1.5, (768, 1280) for SDXL."""
    return read_embedding_shape(path).widths


def family_problem(widths: tuple[int, ...], family: str) -> str | None:
    """Why an embedding of these widths cannot serve a model family (None when the count of encoders fits)."""
    wanted = 2 if family == "sdxl" else 1
    if len(widths) == wanted:
        return None
    if wanted == 2:
        return (f"it is made for one text encoder (width {widths[0]}, SD 1.5?); SDXL needs an embedding "
                "with clip_l and clip_g vectors")
    return f"it is made for two text encoders (clip_l + clip_g: SDXL); {family} has one"


def _pickle_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    import torch

    from brushwork.models.loading import pickle_problem

    try:
        data = torch.load(path, map_location="meta", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch.load raises many types; all mean "cannot read"
        raise ValueError(pickle_problem(exc) or f"not a readable PyTorch file ({type(exc).__name__})") from None
    return {key: tuple(value.shape) for key, value in pickle_tensors(data).items()}
