"""Warm LoRAs: each adapter file is read once and stays loaded in its pipeline, LRU within a byte budget.

Why not reload per run (what most servers do, and what diffusers #11423 is
about): reading and injecting a LoRA costs far more than a whole few-step
generation. Why not fuse: `fuse_lora` writes into the base weights, and
`unfuse_lora` leaves float rounding behind, so the base model would no
longer give its own pixels after a LoRA run. Here every adapter stays a
separate PEFT adapter keyed by the file's sha256; a run switches the Plan's
set on with its weights (`set_adapters`), and the next run without LoRAs
switches them all off (`disable_lora`), which makes every LoRA layer return
its untouched base layer's output — the base pixels come back bit for bit.
diffusers' `hotswap` is for torch.compile'd UNets (no recompile on swap);
brushwork does not compile yet, so plain adapter switching is the fast path.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brushwork.engine.adapters import check_lora_file, load_lora, unusable
from brushwork.plan import AdapterRef


@dataclass
class _Loaded:
    adapter: str  # the PEFT adapter name inside the pipeline
    nbytes: int


def read_lora_file(name: str, path: Path) -> dict[str, Any]:
    """One LoRA file's tensors (the only place LoRA files are read; pickles only under the pickle policy,
    which the catalog enforced before the path got here)."""
    import torch

    check_lora_file(name, path)
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        from brushwork.models.loading import first_line, pickle_problem

        raise unusable("lora", name, path, pickle_problem(exc) or first_line(exc)) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise unusable("lora", name, path, "holds no tensors by name (not a LoRA state dict)")
    return state


def adapter_name(ref: AdapterRef) -> str:
    """Content-addressed: the same file under two names is one adapter."""
    return f"lora_{ref.sha256[:16]}"


class WarmLoras:
    """The LoRAs loaded into one pipeline. Not thread-safe: the Engine serialises runs."""

    def __init__(self, pipe: Any, budget_bytes: int) -> None:
        self.pipe = pipe
        self.budget_bytes = budget_bytes
        self._loaded: OrderedDict[str, _Loaded] = OrderedDict()  # by sha256, least recently used first
        self.active = False

    @property
    def loaded(self) -> list[str]:
        """sha256 of the resident adapters, least recently used first."""
        return list(self._loaded)

    @property
    def nbytes(self) -> int:
        return sum(entry.nbytes for entry in self._loaded.values())

    def activate(self, refs: Sequence[AdapterRef], path_of: Callable[[AdapterRef], Path]) -> None:
        """Make exactly `refs` (with their weights) the active LoRAs; load the ones not resident yet."""
        if not refs:
            self.deactivate()
            return
        names: list[str] = []
        weights: list[float] = []
        for ref in refs:
            entry = self._loaded.get(ref.sha256)
            if entry is None:
                try:
                    entry = self._load(ref, path_of(ref))
                except BaseException:
                    self.deactivate()  # a load may have switched adapters on: the next run must see the base
                    raise
            self._loaded.move_to_end(ref.sha256)
            if entry.adapter not in names:  # one file under two names: its weights add up
                names.append(entry.adapter)
                weights.append(0.0)
            weights[names.index(entry.adapter)] += ref.weight
        self._shrink(keep={ref.sha256 for ref in refs})
        self.pipe.enable_lora()
        self.pipe.set_adapters(names, adapter_weights=weights)
        self.active = True

    def deactivate(self) -> None:
        """Every LoRA off: the pipeline computes exactly its base weights' output again."""
        if self._loaded:
            self.pipe.disable_lora()
        self.active = False
        self._shrink(keep=set())

    def _load(self, ref: AdapterRef, path: Path) -> _Loaded:
        state = read_lora_file(ref.name, path)
        nbytes = sum(tensor.numel() * tensor.element_size() for tensor in state.values())
        name = adapter_name(ref)
        load_lora(self.pipe, ref.name, path, name, state)
        entry = _Loaded(name, nbytes)
        self._loaded[ref.sha256] = entry
        return entry

    def _shrink(self, keep: set[str]) -> None:
        """Evict least recently used adapters (never those in `keep`) until the budget holds."""
        for sha in list(self._loaded):
            if self.nbytes <= self.budget_bytes:
                return
            if sha not in keep:
                self.pipe.delete_adapters([self._loaded.pop(sha).adapter])
