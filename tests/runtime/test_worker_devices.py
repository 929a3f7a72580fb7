"""Which devices the server's workers run on, with fake torch modules (no GPU needed)."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest

from brushwork.runtime.device import cuda_device_count, worker_devices, worker_layout


def _torch_with(gpus: int) -> SimpleNamespace:
    def is_available() -> bool:
        raise AssertionError("is_available() runs cudaGetDeviceCount: device_count() (NVML) is enough")

    return SimpleNamespace(cuda=SimpleNamespace(device_count=lambda: gpus, is_available=is_available))


class Untouchable:
    """A torch module that fails when used: the answer must come from the environment alone."""

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"torch.{name} was used")


@pytest.fixture(autouse=True)
def _all_gpus_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_auto_and_cuda_mean_every_gpu(device: str) -> None:
    assert worker_devices(device, torch_module=_torch_with(3)) == ["cuda:0", "cuda:1", "cuda:2"]


@pytest.mark.parametrize("device", ["cuda:1", "cpu", "mps"])
def test_a_pinned_device_is_one_worker_there(device: str) -> None:
    assert worker_devices(device, torch_module=Untouchable()) == [device]


def test_without_gpus_the_worker_still_chooses_mps_or_cpu() -> None:
    assert worker_devices("auto", torch_module=_torch_with(0)) == ["auto"]
    assert worker_devices("cuda", torch_module=_torch_with(0)) == ["cuda"]  # its worker says why


@pytest.mark.parametrize("hidden", ["", "-1", " "])
def test_cuda_visible_devices_hiding_every_gpu_needs_no_torch(monkeypatch: pytest.MonkeyPatch, hidden: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", hidden)
    assert cuda_device_count(torch_module=Untouchable()) == 0
    assert worker_devices("auto", torch_module=Untouchable()) == ["auto"]


def test_visible_gpus_are_renumbered_from_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    # workers inherit CUDA_VISIBLE_DEVICES, so GPUs 2 and 5 are cuda:0 and cuda:1 inside them
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")
    assert worker_devices("auto", torch_module=_torch_with(2)) == ["cuda:0", "cuda:1"]


def test_a_broken_driver_counts_as_no_gpu() -> None:
    def broken() -> int:
        raise RuntimeError("CUDA driver initialization failed")

    assert cuda_device_count(torch_module=SimpleNamespace(cuda=SimpleNamespace(device_count=broken))) == 0


def test_layout_zero_is_one_worker_per_device_and_n_is_round_robin() -> None:
    two = _torch_with(2)
    assert worker_layout("auto", 0, torch_module=two) == ["cuda:0", "cuda:1"]
    assert worker_layout("auto", 3, torch_module=two) == ["cuda:0", "cuda:1", "cuda:0"]
    assert worker_layout("auto", 1, torch_module=two) == ["cuda:0"]
    assert worker_layout("cuda:1", 2, torch_module=two) == ["cuda:1", "cuda:1"]
    assert worker_layout("auto", 0, torch_module=_torch_with(0)) == ["auto"]
    assert worker_layout("cpu", 2, torch_module=Untouchable()) == ["cpu", "cpu"]


def test_counting_with_real_torch_creates_no_cuda_context() -> None:
    # a fresh interpreter: earlier tests in this session may have used CUDA themselves
    code = (
        "import torch\n"
        "from brushwork.runtime.device import worker_devices\n"
        "devices = worker_devices('auto')\n"
        "assert not torch.cuda.is_initialized(), 'the server process made a CUDA context'\n"
        "count = torch.cuda.device_count()\n"
        "assert devices == ([f'cuda:{i}' for i in range(count)] or ['auto']), devices\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_real_torch_device_count_is_what_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert worker_devices("auto") == ["cuda:0", "cuda:1"]
