"""The shapes the job layer passes around. Only JSON-safe values and image bytes cross a process.

`EngineClient` is deliberately narrow (run one Plan, report events, honour a
cancel flag): the in-process engine, a worker process and, later, a Ray Serve
replica all fit behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from brushwork.contract.events import CancelToken
from brushwork.plan import Plan


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


@dataclass
class JobRecord:
    """One job as the store keeps it. `plan_json` is the checked Plan; `images` are storage keys."""

    id: str
    status: JobStatus
    plan_json: str
    style: str
    priority: int = 0
    attempts: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    images: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    idempotency_key: str | None = None
    cache_key: str = ""
    batch_key: str = ""  # Plan.batch_key(): equal keys may run as one batch; "" = always alone
    image_count: int = 1
    notes: list[str] = field(default_factory=list)  # the run's Result.notes (e.g. an fp32 VAE retry)

    @property
    def plan(self) -> Plan:
        return Plan.from_json(self.plan_json)


@dataclass
class RunOutput:
    """What one run returns across the boundary: PNG bytes (metadata included) in seed order."""

    images: list[bytes]
    timings: dict[str, float] = field(default_factory=dict)
    filtered: list[bool] = field(default_factory=list)
    peak_memory: int | None = None  # device bytes at most during the run (CUDA only)
    notes: list[str] = field(default_factory=list)  # what the engine did differently (Result.notes)


# A JSON-safe progress event: {"type": "progress", "step": 3, "total": 20, "elapsed": 1.2, "stage": "generate"}
EventSink = Callable[[dict[str, Any]], None]


class WorkerCrashed(Exception):
    """The process running the engine died mid-job (segfault, OOM kill, kill -9): the job may be retried."""


# (index of the Plan in the batch, its JSON-safe event)
MemberEventSink = Callable[[int, dict[str, Any]], None]


class EngineClient(Protocol):
    """Run Plans somewhere: in this process, in a worker process, on a cluster."""

    def run_batch(self, plans: list[Plan], on_event: MemberEventSink, cancel: CancelToken) -> list[RunOutput]:
        """Blocking: run checked Plans that share a `batch_key()` (or one Plan) together, reporting each
        Plan's events; one output per Plan. Raises `Cancelled`, `WorkerCrashed` or a BrushworkError."""
        ...

    def ready(self) -> bool:
        """Can it take a job now (worker started, model machinery importable)?"""
        ...

    def close(self) -> None:
        """Release the device / stop the worker process."""
        ...
