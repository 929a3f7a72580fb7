"""Device and dtype policy: decided when an Engine is built, never at import.

* CPU → float32 (half precision on CPU is slow or unsupported).
* CUDA → float16, except GTX 16xx cards (Turing TU116/TU117), whose fp16
  UNet/VAE produce NaN (black) images: those get float32. bfloat16 only
  when asked for.
* MPS → float16.
An explicit `dtype` setting always wins over "auto".

The server lays out its worker processes with `worker_devices` / `worker_layout`,
which count GPUs without creating a CUDA context in the server process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Protocol


class CudaInfo(Protocol):
    """The slice of `torch.cuda` the policy needs (fakes implement it in tests)."""

    def is_available(self) -> bool: ...
    def get_device_name(self, device: int = 0) -> str: ...


@dataclass(frozen=True)
class DevicePolicy:
    device: str
    dtype: str  # "float32" | "float16" | "bfloat16"
    reason: str


FP16_BROKEN_GPUS = ("GTX 1650", "GTX 1660", "GTX 1630")


def _mps_available(torch_module: Any) -> bool:
    backend = getattr(getattr(torch_module, "backends", None), "mps", None)
    return bool(backend and backend.is_available())


def choose(device: str = "auto", dtype: str = "auto", *, torch_module: Any = None) -> DevicePolicy:
    """Pick device + dtype from settings and what the machine has."""
    if torch_module is None:
        import torch as torch_module
    cuda: CudaInfo = torch_module.cuda
    if device == "auto":
        if cuda.is_available():
            device = "cuda"
        elif _mps_available(torch_module):
            device = "mps"
        else:
            device = "cpu"
    if dtype != "auto":
        return DevicePolicy(device, dtype, "set explicitly")
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        name = cuda.get_device_name(index)
        if any(bad in name for bad in FP16_BROKEN_GPUS):
            return DevicePolicy(device, "float32", f"{name}: fp16 gives NaN images on this GPU")
        return DevicePolicy(device, "float16", f"{name}: fp16 halves memory and is fast")
    if device == "mps":
        return DevicePolicy(device, "float16", "Apple GPU: fp16")
    return DevicePolicy(device, "float32", "CPU: float32")


def apply_threads(threads: int, *, torch_module: Any = None) -> int:
    """Use `threads` CPU threads for torch's kernels (0: leave torch's default); returns the count in use.

    Process-wide, so it is called where an Engine is built (each worker builds its own), never at import.
    """
    if torch_module is None:
        import torch as torch_module
    if threads > 0 and torch_module.get_num_threads() != threads:
        torch_module.set_num_threads(threads)
    return int(torch_module.get_num_threads())


def torch_dtype(name: str) -> Any:
    import torch

    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


_NO_GPUS = ("", "-1")  # CUDA_VISIBLE_DEVICES values that hide every GPU


def cuda_device_count(*, torch_module: Any = None) -> int:
    """GPUs this process may use, counted without creating a CUDA context.

    `torch.cuda.device_count()` asks NVML (honouring CUDA_VISIBLE_DEVICES) and only falls back to
    `cudaGetDeviceCount`, which loads the driver but makes no context; neither initialises torch's
    CUDA state. Workers are spawned, not forked, so the fallback's fork hazard does not apply.
    A CUDA_VISIBLE_DEVICES that hides every GPU answers 0 without importing torch.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES", "0").strip() in _NO_GPUS:
        return 0
    if torch_module is None:
        import torch as torch_module
    try:
        return max(0, int(torch_module.cuda.device_count()))
    except (RuntimeError, OSError):  # a broken driver install: no usable GPU, the workers say why
        return 0


def worker_devices(device: str = "auto", *, torch_module: Any = None) -> list[str]:
    """Devices to run one engine worker on each: every GPU for "auto"/"cuda", else the device as set.

    A pinned device ("cuda:1", "cpu", "mps") is one worker there. Without GPUs "auto" stays "auto"
    so the worker still picks MPS or CPU itself; "cuda" stays "cuda" and its worker reports the error.
    """
    if device not in ("auto", "cuda"):
        return [device]
    count = cuda_device_count(torch_module=torch_module)
    return [f"cuda:{index}" for index in range(count)] or [device]


def worker_layout(device: str = "auto", workers: int = 0, *, torch_module: Any = None) -> list[str]:
    """The device of each worker: `workers` 0 = one per device; N = N workers round-robin over them.

    Several workers on one GPU share (split) its memory: each loads its own copy of the models.
    """
    devices = worker_devices(device, torch_module=torch_module)
    return [devices[index % len(devices)] for index in range(workers or len(devices))]
