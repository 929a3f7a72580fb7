"""Progress reporting and cooperative cancellation for a running generation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    """Reported after every denoising step."""

    step: int  # 1-based, steps completed so far
    total: int
    elapsed: float  # seconds since the first step began

    @property
    def fraction(self) -> float:
        return self.step / self.total if self.total else 1.0


ProgressCallback = Callable[[StepEvent], None]


class CancelToken:
    """Set from any thread; the engine checks it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class StepTracker:
    """Turns diffusers' per-step callback into StepEvents and cancellation checks."""

    def __init__(self, total: int, on_step: ProgressCallback | None, cancel: CancelToken | None) -> None:
        self.total = total
        self.on_step = on_step
        self.cancel = cancel
        self.started = time.perf_counter()
        self.completed = 0

    def step_done(self) -> bool:
        """Record a finished step; returns True when the caller asked to stop."""
        self.completed += 1
        if self.on_step is not None:
            self.on_step(StepEvent(self.completed, self.total, time.perf_counter() - self.started))
        return self.cancel is not None and self.cancel.cancelled
