"""Peak device memory of a run, for the server's metrics (CUDA only; None elsewhere).

Measured around each run (`reset_peak` before, `peak_bytes` after) in the
process that owns the device, so a worker reports what its jobs really
needed, not what the allocator happens to cache.
"""

from __future__ import annotations

from typing import Any


def _cuda(device: str, torch_module: Any) -> Any:
    if not device.startswith("cuda"):
        return None
    if torch_module is None:
        import torch as torch_module
    cuda = torch_module.cuda
    return cuda if cuda.is_available() else None


def reset_peak(device: str, *, torch_module: Any = None) -> None:
    cuda = _cuda(device, torch_module)
    if cuda is not None:
        cuda.reset_peak_memory_stats(device)


def peak_bytes(device: str, *, torch_module: Any = None) -> int | None:
    """Most bytes allocated on `device` since the last `reset_peak`; None for CPU and MPS."""
    cuda = _cuda(device, torch_module)
    return None if cuda is None else int(cuda.max_memory_allocated(device))
