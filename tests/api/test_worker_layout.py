"""`default_clients`: how many worker processes the server starts, and on which devices."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from brushwork.config import ServerSettings, Settings


class RecordingWorker:
    """Stands in for WorkerClient: remembers the device each worker would own, starts no process."""

    made: ClassVar[list[str | None]] = []

    def __init__(self, settings: Settings, *, device: str | None = None) -> None:
        self.device = device
        RecordingWorker.made.append(device)


@pytest.fixture
def layout(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """layout(gpus, device="auto", **server) → the device of each WorkerClient `default_clients` makes."""
    torch = pytest.importorskip("torch")
    from brushwork.api.app import default_clients

    monkeypatch.setattr("brushwork.jobs.clients.WorkerClient", RecordingWorker)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)

    def build(gpus: int, device: str = "auto", **server: Any) -> list[str | None]:
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        RecordingWorker.made = []
        settings = Settings(home=tmp_path, device=device, server=ServerSettings(**server))
        clients = default_clients(settings, SimpleNamespace(engine=None))  # type: ignore[arg-type]
        assert all(isinstance(c, RecordingWorker) for c in clients)
        return RecordingWorker.made

    return build


def test_default_is_one_worker_per_gpu(layout) -> None:
    assert layout(4) == ["cuda:0", "cuda:1", "cuda:2", "cuda:3"]
    assert layout(2, device="cuda") == ["cuda:0", "cuda:1"]


def test_a_cpu_only_machine_gets_one_worker_that_picks_its_device(layout) -> None:
    assert layout(0) == ["auto"]


def test_a_pinned_device_gets_one_worker(layout) -> None:
    assert layout(4, device="cuda:2") == ["cuda:2"]
    assert layout(4, device="cpu") == ["cpu"]


def test_n_workers_are_spread_round_robin(layout) -> None:
    assert layout(2, workers=5) == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    assert layout(4, workers=2) == ["cuda:0", "cuda:1"]
    assert layout(1, workers=2) == ["cuda:0", "cuda:0"]  # allowed: the two split the GPU's memory
    assert layout(0, workers=3) == ["auto", "auto", "auto"]


def test_cuda_visible_devices_limits_the_workers(layout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert layout(4) == ["auto"]


def test_in_process_mode_stays_one_client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from brushwork.api.app import default_clients

    made: list[Any] = []
    monkeypatch.setattr("brushwork.jobs.clients.WorkerClient", RecordingWorker)
    monkeypatch.setattr("brushwork.jobs.clients.InProcessClient", lambda settings, engine: made.append(engine) or engine)
    settings = Settings(home=tmp_path, server=ServerSettings(worker_mode="inprocess", workers=3))
    engine = object()
    assert default_clients(settings, SimpleNamespace(engine=engine)) == [engine]  # type: ignore[arg-type]
    assert made == [engine]


def test_serve_says_how_many_workers_run_where(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from brushwork.cli.serve import engine_summary

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    settings = Settings(home=tmp_path)
    assert engine_summary(settings) == "2 worker processes on cuda:0, cuda:1"
    three = settings.model_copy(update={"server": ServerSettings(workers=3)})
    assert engine_summary(three) == "3 worker processes on cuda:0 (2), cuda:1"
    pinned = settings.model_copy(update={"device": "cpu"})
    assert engine_summary(pinned) == "1 worker process on cpu"
    inprocess = settings.model_copy(update={"server": ServerSettings(worker_mode="inprocess")})
    assert engine_summary(inprocess) == "in the server process on auto"
