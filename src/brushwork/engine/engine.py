"""The Engine executes Plans: pipeline from the cache, adapters, runner, images.

It makes no decisions a Plan has not already made; it only knows how to carry
them out on this machine's device. One Engine serialises its runs (diffusers
pipelines are not thread-safe), so share one per process or worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from brushwork.config import Settings
from brushwork.engine.adapters import applied_adapters
from brushwork.engine.progress import CancelToken, ProgressCallback, StepTracker
from brushwork.engine.prompts import prompt_kwargs
from brushwork.engine.runners.base import RunContext, runner_for
from brushwork.errors import ModelUnavailable
from brushwork.models.cache import PipelineCache, PipelineKey
from brushwork.models.catalog import ModelCatalog
from brushwork.plan import Plan, Result
from brushwork.resolve import validate_plan
from brushwork.runtime.device import DevicePolicy, choose, torch_dtype
from brushwork.runtime.samplers import from_plan


@dataclass
class LoadedPipeline:
    """A cached pipeline plus the model's own scheduler config, which each run's sampler is built from."""

    pipe: Any
    scheduler_config: Any


class Engine:
    def __init__(
        self,
        settings: Settings,
        catalog: ModelCatalog | None = None,
        policy: DevicePolicy | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or ModelCatalog(settings)
        self.policy = policy or choose(settings.device, settings.dtype)
        self.cache = PipelineCache(capacity=settings.pipeline_cache_size)
        self._lock = threading.Lock()

    # -- pipelines -------------------------------------------------------------

    def _key(self, plan: Plan) -> PipelineKey:
        return PipelineKey(plan.model.sha256, plan.model.family, self.policy.device, self.policy.dtype)

    def _load(self, plan: Plan) -> LoadedPipeline:
        from brushwork.models.loading import load_pipeline

        entry = self.catalog.get(plan.model.name)
        path = self.catalog.locate(entry)
        sha = self.catalog.sha256(path)
        if sha != plan.model.sha256:
            raise ModelUnavailable(
                f"model {plan.model.name!r} at {path} is not the one the plan names "
                f"(plan hash {plan.model.short_hash}, file hash {sha[:10]})"
            )
        pipe = load_pipeline(path, plan.model.family, home=self.settings.home,
                             torch_dtype=torch_dtype(self.policy.dtype), config=entry.config)
        pipe.set_progress_bar_config(disable=True)
        return LoadedPipeline(pipe.to(self.policy.device), pipe.scheduler.config)

    def loaded(self, plan: Plan) -> LoadedPipeline:
        return self.cache.get(self._key(plan), lambda: self._load(plan))

    def pipeline(self, plan: Plan) -> Any:
        """The warm diffusers pipeline for the Plan's model (loaded on first use)."""
        return self.loaded(plan).pipe

    # -- running -----------------------------------------------------------------

    def run(
        self,
        plan: Plan,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Result:
        """Execute `plan`; image i is made from seed `plan.seeds[i]` alone."""
        import torch

        validate_plan(plan, self.settings.limits)
        tracker = StepTracker(plan.steps, on_progress, cancel)
        with self._lock:
            tracker.check_cancelled()
            started = time.perf_counter()
            loaded_pipeline = self.loaded(plan)
            pipe = loaded_pipeline.pipe
            loaded = time.perf_counter()
            # A fresh sampler per run, from the model's own config: nothing leaks from the last run.
            pipe.scheduler = from_plan(plan.sampler, plan.schedule).build(loaded_pipeline.scheduler_config, plan.seeds)
            with applied_adapters(pipe, plan, self.catalog, torch_dtype(self.policy.dtype)), torch.inference_mode():
                ctx = RunContext(
                    # CPU generators: the same seed gives the same noise on every device.
                    generators=[torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
                    tracker=tracker,
                    prompt_kwargs=prompt_kwargs(pipe, plan),
                )
                tracker.begin()
                images = runner_for(plan.mode)(pipe, plan, ctx)
            done = time.perf_counter()
        return Result(
            images=images,
            plan=plan,
            timings={"load": loaded - started, "generate": done - loaded, "total": done - started},
        )
