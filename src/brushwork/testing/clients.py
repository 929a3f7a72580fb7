"""A fake engine client for tests of the job service and the HTTP API: no model, no device."""

from __future__ import annotations

import io
import threading
import time
from typing import Any

from PIL import Image

from brushwork.contract.events import CancelToken
from brushwork.errors import Cancelled
from brushwork.jobs.types import RunOutput, WorkerCrashed
from brushwork.plan import Plan


class FakeClient:
    """An `EngineClient` that runs nothing: a tiny PNG per seed. It can hold a job until released,
    crash once (as a killed worker), and honours cancel while holding; `runs` counts passes."""

    def __init__(self, hold: threading.Event | None = None, crash_first: bool = False,
                 notes: list[str] | None = None) -> None:
        self.hold = hold
        self.crash_first = crash_first
        self.notes = list(notes or [])  # what each run reports in RunOutput.notes
        self.runs = 0
        self.restarts = 0
        self.batches: list[int] = []  # Plans per run_batch call

    def run_batch(self, plans: list[Plan], on_event: Any, cancel: CancelToken) -> list[RunOutput]:
        """Like the engine: one pass for every Plan of the batch (recorded in `batches`)."""
        self.batches.append(len(plans))
        out = self.run(plans[0], lambda event: [on_event(i, event) for i in range(len(plans))], cancel)
        return [RunOutput(images=out.images[:1] * plan.batch_size, timings=dict(out.timings), notes=list(out.notes))
                for plan in plans]

    def run(self, plan: Plan, on_event: Any, cancel: CancelToken) -> RunOutput:
        self.runs += 1
        if self.crash_first and self.runs == 1:
            raise WorkerCrashed("worker exited with code -9")
        on_event({"type": "progress", "step": 1, "total": 1, "elapsed": 0.0, "stage": "generate"})
        while self.hold is not None and not self.hold.is_set():
            if cancel.cancelled:
                raise Cancelled("cancelled after 1 of 1 steps")
            time.sleep(0.01)
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8), (self.runs % 256, 0, 0)).save(buffer, format="PNG")
        return RunOutput(images=[buffer.getvalue()] * plan.batch_size, timings={"total": 0.0}, notes=list(self.notes))

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass
