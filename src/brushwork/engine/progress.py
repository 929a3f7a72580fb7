"""Step tracking and cooperative cancellation for a running generation.

The event and cancel types are part of the contract (`brushwork.contract.events`)
because the server sends them across processes; this module turns diffusers'
per-timestep callbacks into them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from brushwork.contract.events import CancelToken, ProgressCallback, StepEvent
from brushwork.errors import Cancelled

__all__ = ["CancelToken", "MemberProgress", "ProgressCallback", "StepEvent", "StepTracker"]

# (index of the Plan in a batch, its step event): progress of batched Plans, each reported as its own
MemberProgress = Callable[[int, StepEvent], None]
# (the step's event, the latents after it): for live previews
LatentsCallback = Callable[[StepEvent, Any], None]


class StepTracker:
    """Turns diffusers' per-timestep callback into StepEvents and cancellation.

    Second-order samplers (Heun, DPM++ SDE) evaluate the model 2N-1 times for N
    steps; like diffusers' own progress bar, a step counts when a whole solver
    step is done, so progress never passes N. A Plan with several passes (hires
    fix) counts on across them, under the stage's name.
    """

    def __init__(self, total: int, on_step: ProgressCallback | None, cancel: CancelToken | None, *,
                 preview_every: int = 0, on_latents: LatentsCallback | None = None) -> None:
        self.total = total
        self.on_step = on_step
        self.cancel = cancel
        self.preview_every = preview_every
        self.on_latents = on_latents  # gets every `preview_every`-th step's event with the latents, instead of on_step
        self.started = time.perf_counter()
        self.completed = 0
        self.stage = "generate"

    def begin(self, stage: str = "generate") -> None:
        """Start a stage; the clock starts at the first one, so it/s excludes model loading."""
        if stage == "generate":
            self.started = time.perf_counter()
        self.stage = stage
        self.check_cancelled()

    def check_cancelled(self) -> None:
        if self.cancel is not None and self.cancel.cancelled:
            raise Cancelled(f"cancelled after {self.completed} of {self.total} steps")

    def timestep_done(self, index: int, timesteps: int, order: int, latents: Any = None) -> None:
        """Call after timestep `index` of `timesteps`; raises `Cancelled` when asked to stop."""
        if index == timesteps - 1 or (index + 1) % order == 0:
            self.completed = min(self.completed + 1, self.total)
            event = StepEvent(self.completed, self.total, time.perf_counter() - self.started, self.stage)
            if self._wants_preview(latents):
                assert self.on_latents is not None
                self.on_latents(event, latents)
            elif self.on_step is not None:
                self.on_step(event)
        self.check_cancelled()

    def _wants_preview(self, latents: Any) -> bool:
        if latents is None or self.on_latents is None or self.preview_every <= 0:
            return False
        return self.completed % self.preview_every == 0 and self.completed < self.total  # the result follows
