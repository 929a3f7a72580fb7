"""What every runner receives, and the table that maps a Plan's mode to one.

Runners are referenced as "module:function" strings and imported on first
use, so adding a mode is one new module plus one table row.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from brushwork.engine.progress import StepTracker

RUNNERS: dict[str, str] = {
    "txt2img": "brushwork.engine.runners.txt2img:run",
}


@dataclass
class RunContext:
    """Everything a runner needs besides the pipeline and the Plan."""

    generators: list[Any]
    tracker: StepTracker
    prompt_kwargs: dict[str, Any] = field(default_factory=dict)

    def diffusers_callback(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """diffusers' `callback_on_step_end`: progress, and `Cancelled` raised between steps."""
        self.tracker.timestep_done(step, len(pipe.scheduler.timesteps), pipe.scheduler.order)
        return callback_kwargs


Runner = Callable[[Any, Any, RunContext], list[Any]]


def runner_for(mode: str) -> Runner:
    target = RUNNERS.get(mode)
    if target is None:
        from brushwork.errors import NotFound

        raise NotFound("mode", mode, RUNNERS)
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)
