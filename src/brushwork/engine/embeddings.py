"""Textual-inversion embeddings, loaded once per warm pipeline.

The shared tokenizer is never touched (adding tokens to it would change how
every later prompt tokenizes). Instead the prompt encoder
(`engine.prompts`) puts placeholder ids where an embedding's name stands and
swaps in the embedding's vectors at the token-embedding layer, as A1111 does.
An `EmbeddingTable` lives on each `LoadedPipeline` and keeps the vectors of
every embedding a run used, already on the text encoders' device and dtype,
so each file is read once while the pipeline stays warm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.catalog import ModelCatalog
from brushwork.models.embedding_files import embedding_layout, pickle_tensors
from brushwork.plan import AdapterRef


@dataclass(frozen=True)
class Embedding:
    """One embedding's vectors: a (vectors, width) tensor per text encoder, in the pipeline's encoder order."""

    name: str
    sha256: str
    vectors: tuple[Any, ...]

    @property
    def length(self) -> int:
        return int(self.vectors[0].shape[0])


EmbeddingLookup = Callable[[AdapterRef], Embedding]


def text_encoders(pipe: Any) -> list[Any]:
    return [e for e in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if e is not None]


def _read_tensors(path: Path, allow_pickle: bool) -> dict[str, Any]:
    """All tensors of an embedding file by name (the one place a file is read; tests count calls)."""
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if not allow_pickle:
        raise ValueError("is a pickle file, which can run code when loaded; convert it to .safetensors, "
                         "or set BRUSHWORK_ALLOW_PICKLE=1 to load it with torch.load(weights_only=True)")
    import torch

    return pickle_tensors(torch.load(path, map_location="cpu", weights_only=True))


def load_embedding(pipe: Any, name: str, sha256: str, path: Path, allow_pickle: bool) -> Embedding:
    """Read an embedding file and fit it to the pipeline's text encoders; one-line ModelUnavailable if it cannot."""
    from brushwork.models.loading import first_line, pickle_problem

    try:
        tensors = _read_tensors(path, allow_pickle)
        keys, shape = embedding_layout({key: tuple(value.shape) for key, value in tensors.items()})
    except ValueError as exc:
        raise ModelUnavailable(f"embedding {name!r} ({path.name}): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - torch/safetensors raise many types; all mean "cannot read"
        problem = pickle_problem(exc) or f"{type(exc).__name__}: {first_line(exc)}"
        raise ModelUnavailable(f"embedding {name!r} ({path.name}): {problem}") from None
    encoders = text_encoders(pipe)
    wanted = tuple(int(e.get_input_embeddings().weight.shape[1]) for e in encoders)
    if shape.widths != wanted:
        made_for = "SDXL (clip_l + clip_g)" if len(shape.widths) == 2 else "a model with one text encoder"
        raise ModelUnavailable(
            f"embedding {name!r} ({path.name}): its vectors are {'+'.join(map(str, shape.widths))} wide, this "
            f"model's text encoder{'s take' if len(wanted) > 1 else ' takes'} {'+'.join(map(str, wanted))} "
            f"(made for {made_for}?)")
    vectors = []
    for key, encoder in zip(keys, encoders, strict=True):
        weight = encoder.get_input_embeddings().weight
        vectors.append(tensors[key].reshape(shape.vectors, -1).to(device=weight.device, dtype=weight.dtype))
    return Embedding(name, sha256, tuple(vectors))


@dataclass
class EmbeddingTable:
    """The embeddings loaded for one warm pipeline, by file hash: each file is read once, then kept."""

    loaded: dict[str, Embedding] = field(default_factory=dict)

    def get(self, pipe: Any, ref: AdapterRef, catalog: ModelCatalog, allow_pickle: bool) -> Embedding:
        from brushwork.engine.adapters import adapter_path

        found = self.loaded.get(ref.sha256)
        if found is None:
            path = adapter_path(catalog, "embedding", ref)
            found = self.loaded[ref.sha256] = load_embedding(pipe, ref.name, ref.sha256, path, allow_pickle)
        return found if found.name == ref.name else Embedding(ref.name, found.sha256, found.vectors)

    def lookup(self, pipe: Any, catalog: ModelCatalog, allow_pickle: bool) -> EmbeddingLookup:
        """What the prompt encoder calls to get a Plan's embedding (loading it on first use)."""
        return lambda ref: self.get(pipe, ref, catalog, allow_pickle)
