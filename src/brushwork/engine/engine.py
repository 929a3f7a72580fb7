"""The Engine executes Plans: pipeline from the cache, adapters, runner, post chain, images.

It makes no decisions a Plan has not already made; it only knows how to carry
them out on this machine's device. It trusts the Plan (checked once where it
entered: resolve, a PNG, another process). One Engine serialises its runs
(diffusers pipelines are not thread-safe), so share one per process or worker.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brushwork.config import Settings
from brushwork.contract.validation import planned_steps
from brushwork.engine.adapters import applied_adapters
from brushwork.engine.progress import CancelToken, ProgressCallback, StepTracker
from brushwork.engine.prompts import prompt_kwargs
from brushwork.engine.runners.base import PIPELINE_CLASSES, Role, RunContext, runner_for
from brushwork.errors import ModelUnavailable
from brushwork.models.cache import PipelineCache, PipelineKey
from brushwork.models.catalog import Kind, ModelCatalog
from brushwork.plan import Plan, Result
from brushwork.post.upscale import Upscalers
from brushwork.runtime.device import DevicePolicy, choose, torch_dtype
from brushwork.runtime.samplers import scheduler_for
from brushwork.storage.assets import AssetStore


@dataclass
class LoadedPipeline:
    """A cached base pipeline plus the model's own scheduler config, which each run's sampler is built from."""

    pipe: Any
    scheduler_config: Any


class Engine:
    def __init__(
        self,
        settings: Settings,
        catalog: ModelCatalog | None = None,
        policy: DevicePolicy | None = None,
        assets: AssetStore | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog or ModelCatalog(settings)
        self.policy = policy or choose(settings.device, settings.dtype)
        self.assets = assets or AssetStore(settings.assets_dir)
        self.cache = PipelineCache(capacity=settings.pipeline_cache_size)
        self.controlnets = PipelineCache(capacity=2 * settings.pipeline_cache_size)
        self.upscalers = Upscalers(self.catalog, device=self.policy.device, dtype=self.policy.dtype)
        self._lock = threading.Lock()

    # -- weights -------------------------------------------------------------------

    def _key(self, plan: Plan) -> PipelineKey:
        return PipelineKey(plan.model.sha256, plan.model.family, self.policy.device, self.policy.dtype)

    def _checked(self, path: Path, sha256: str, what: str) -> Path:
        sha = self.catalog.sha256(path)
        if sha != sha256:
            raise ModelUnavailable(f"{what} at {path} is not the one the plan names "
                                   f"(plan hash {sha256[:12]}, file hash {sha[:12]})")
        return path

    def _load(self, plan: Plan) -> LoadedPipeline:
        from brushwork.models.loading import load_pipeline

        if plan.model.path is not None:
            entry = self.catalog.entry_for_path(Path(plan.model.path))
        else:
            entry = self.catalog.get(plan.model.name)
        path = self._checked(self.catalog.locate(entry), plan.model.sha256, f"model {plan.model.name!r}")
        pipe = load_pipeline(path, plan.model.family, home=self.settings.home,
                             torch_dtype=torch_dtype(self.policy.dtype), config=entry.config,
                             variant=plan.model.variant)
        pipe.set_progress_bar_config(disable=True)
        return LoadedPipeline(pipe.to(self.policy.device), pipe.scheduler.config)

    def loaded(self, plan: Plan) -> LoadedPipeline:
        return self.cache.get(self._key(plan), lambda: self._load(plan))

    def pipeline(self, plan: Plan) -> Any:
        """The warm diffusers pipeline for the Plan's model (loaded on first use)."""
        return self.loaded(plan).pipe

    def _file(self, kind: Kind, name: str, sha256: str) -> Path:
        path = self.catalog.adapter(kind, name)
        if path is None:
            raise ModelUnavailable(f"{kind} {name!r} is not installed in {self.catalog.models_dir}")
        return self._checked(path, sha256, f"{kind} {name!r}")

    def _controlnet(self, plan: Plan, name: str, sha256: str) -> Any:
        def load() -> Any:
            from brushwork.models.controlnet import load_controlnet

            model = load_controlnet(self._file("controlnet", name, sha256), plan.model.family,
                                    torch_dtype=torch_dtype(self.policy.dtype), home=self.settings.home,
                                    allow_pickle=self.settings.allow_pickle)
            return model.to(self.policy.device)

        return self.controlnets.get((sha256, self.policy.device, self.policy.dtype), load)

    def _view(self, plan: Plan, base: Any, role: Role, with_control: bool) -> Any:
        """A pipeline of the role's class sharing the base pipeline's modules (diffusers `from_pipe`).

        Views are built per run (cheap: no weights are copied), so they always
        see the base pipeline as this run's adapters left it (e.g. a swapped VAE).
        """
        import diffusers

        from brushwork.models.loading import quiet_dtype_notice

        class_name = PIPELINE_CLASSES[(plan.model.family, role, with_control)]
        if type(base).__name__ == class_name:
            return base
        extra: dict[str, Any] = {}
        if with_control:
            nets = [self._controlnet(plan, unit.model, unit.sha256 or "") for unit in plan.controls]
            extra["controlnet"] = nets[0] if len(nets) == 1 else nets
        if plan.model.family == "sdxl":
            extra["add_watermarker"] = False  # pixels must not depend on whether an optional package is installed
        # dtype=: from_pipe would otherwise cast the shared modules to float32 in place.
        with quiet_dtype_notice():
            view = getattr(diffusers, class_name).from_pipe(base, dtype=base.dtype, **extra)
        view.set_progress_bar_config(disable=True)
        return view

    def upscale_image(self, image: Any, upscaler: str, scale: float, sha256: str | None) -> Any:
        """Upscale one PIL image by `scale` with Lanczos or an upscaler model (tiled, kept warm, hash-checked)."""
        return self.upscalers(image, upscaler, scale, sha256)

    # -- running -----------------------------------------------------------------

    def check(self, plan: Plan) -> None:
        """Check a Plan that came from outside this process before running it (see `engine.checks`)."""
        from brushwork.engine.checks import check_plan

        check_plan(plan, self.settings.limits, self.catalog, self.assets)

    def run(
        self,
        plan: Plan,
        on_progress: ProgressCallback | None = None,
        cancel: CancelToken | None = None,
    ) -> Result:
        """Execute a checked `plan`; image i is made from seed `plan.seeds[i]` alone."""
        import torch

        from brushwork.post.finishing import finish

        tracker = StepTracker(planned_steps(plan), on_progress, cancel)
        with self._lock:
            tracker.check_cancelled()
            started = time.perf_counter()
            loaded_pipeline = self.loaded(plan)
            base = loaded_pipeline.pipe
            loaded = time.perf_counter()
            with applied_adapters(base, plan, self.catalog, torch_dtype(self.policy.dtype)), torch.inference_mode():
                ctx = RunContext(
                    plan=plan,
                    # CPU generators: the same seed gives the same noise on every device.
                    generators=[torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
                    tracker=tracker,
                    prompt_kwargs=prompt_kwargs(base, plan),
                    pipeline=lambda role, control: self._view(plan, base, role, control),
                    # A fresh sampler per pass, from the model's own config: nothing leaks between runs.
                    new_scheduler=lambda: scheduler_for(plan.sampler).build(loaded_pipeline.scheduler_config,
                                                                            plan.seeds),
                    open_image=self.assets.open_rgb,
                    open_mask=self.assets.open_mask,
                    upscale_image=self.upscale_image,
                )
                tracker.begin()
                images = runner_for(plan.mode)(plan, ctx)
                generated = time.perf_counter()
                images, filtered = finish(images, plan, self.upscale_image, self.settings.safety_filter)
            done = time.perf_counter()
        return Result(
            images=images,
            plan=plan,
            timings={"load": loaded - started, "generate": generated - loaded, "post": done - generated,
                     "total": done - started},
            filtered=filtered,
        )
