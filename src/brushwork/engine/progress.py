"""Progress reporting and cooperative cancellation for a running generation."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from brushwork.errors import Cancelled


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
    """Turns diffusers' per-timestep callback into StepEvents and cancellation.

    Second-order samplers (Heun, DPM++ SDE) evaluate the model 2N-1 times for N
    steps; like diffusers' own progress bar, a step counts when a whole solver
    step is done, so progress never passes N.
    """

    def __init__(self, total: int, on_step: ProgressCallback | None, cancel: CancelToken | None) -> None:
        self.total = total
        self.on_step = on_step
        self.cancel = cancel
        self.started = time.perf_counter()
        self.completed = 0

    def begin(self) -> None:
        """Start the clock at the first step, so it/s excludes model loading."""
        self.started = time.perf_counter()

    def check_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(f"cancelled after {self.completed} of {self.total} steps")

    def timestep_done(self, index: int, timesteps: int, order: int) -> None:
        """Call after timestep `index` of `timesteps`; raises `Cancelled` when asked to stop."""
        if index == timesteps - 1 or (index + 1) % order == 0:
            self.completed = min(self.completed + 1, self.total)
            if self.on_step is not None:
                self.on_step(StepEvent(self.completed, self.total, time.perf_counter() - self.started))
        self.check_cancelled()
