"""Progress events and cancel requests: what a running job reports and obeys.

They are plain data (and a thread-safe flag) so the server can send them
across processes; the engine's `StepTracker` produces them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class StepEvent:
    """Reported after every denoising step of a stage (a hires pass is a second stage)."""

    step: int  # 1-based, steps completed so far over all stages
    total: int
    elapsed: float  # seconds since the first step began
    stage: str = "generate"
    preview: bytes | None = None  # a small JPEG of the latents at this step (server progress events)

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
