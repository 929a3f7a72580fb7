"""A warm cache of loaded pipelines, so a second generation loads nothing.

Keyed by (weights hash, family, device, dtype): the same checkpoint under two
aliases is loaded once. Least-recently-used pipelines are evicted past
`capacity`, and their memory is handed back (gc + CUDA cache) on eviction.
"""

from __future__ import annotations

import gc
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PipelineKey:
    sha256: str
    family: str
    device: str
    dtype: str


@dataclass
class CacheStats:
    loads: int = 0
    hits: int = 0
    evictions: int = 0


class PipelineCache:
    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._items: OrderedDict[PipelineKey, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def get(self, key: PipelineKey, load: Callable[[], Any]) -> Any:
        """The cached pipeline for `key`, calling `load()` only on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.stats.hits += 1
                return self._items[key]
            # Evict before loading: on a small GPU the old weights must be gone before new ones arrive.
            while len(self._items) >= self.capacity:
                self._evict_oldest()
            pipe = load()
            self.stats.loads += 1
            self._items[key] = pipe
            return pipe

    def __contains__(self, key: PipelineKey) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def _evict_oldest(self) -> None:
        self._items.popitem(last=False)
        self.stats.evictions += 1
        release_memory()

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            release_memory()


def release_memory() -> None:
    """Return freed tensors' memory: Python first, then the CUDA caching allocator."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
