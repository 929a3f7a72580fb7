"""Peak device memory is read from CUDA's allocator for CUDA devices only."""

from __future__ import annotations

from types import SimpleNamespace

from brushwork.runtime.memory import peak_bytes, reset_peak


class FakeCuda:
    def __init__(self, available: bool = True) -> None:
        self.available = available
        self.calls: list[tuple[str, str]] = []

    def is_available(self) -> bool:
        return self.available

    def reset_peak_memory_stats(self, device: str) -> None:
        self.calls.append(("reset", device))

    def max_memory_allocated(self, device: str) -> int:
        self.calls.append(("peak", device))
        return 4096


def test_cuda_peak_is_reset_and_read_on_the_run_device():
    cuda = FakeCuda()
    torch = SimpleNamespace(cuda=cuda)
    reset_peak("cuda:1", torch_module=torch)
    assert peak_bytes("cuda:1", torch_module=torch) == 4096
    assert cuda.calls == [("reset", "cuda:1"), ("peak", "cuda:1")]


def test_cpu_mps_and_missing_cuda_report_nothing():
    cuda = FakeCuda(available=False)
    torch = SimpleNamespace(cuda=cuda)
    assert peak_bytes("cpu", torch_module=torch) is None and peak_bytes("mps", torch_module=torch) is None
    assert peak_bytes("cuda", torch_module=torch) is None
    reset_peak("cpu", torch_module=torch)
    assert cuda.calls == []
