"""The Engine executes Plans: pipeline from the cache, adapters, runner, post chain, images.

It makes no decisions a Plan has not already made; it only knows how to carry
them out on this machine's device. It trusts the Plan (checked once where it
entered: resolve, a PNG, another process). One Engine serialises its runs
(diffusers pipelines are not thread-safe), so share one per process or worker.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brushwork.config import Settings
from brushwork.contract.validation import planned_steps
from brushwork.engine.adapters import adapter_path, load_checked_vae
from brushwork.engine.embeddings import EmbeddingTable
from brushwork.engine.lora_cache import WarmLoras
from brushwork.engine.preview import latent_jpegs
from brushwork.engine.progress import (
    CancelToken,
    MemberProgress,
    ProgressCallback,
    StepEvent,
    StepTracker,
)
from brushwork.engine.prompts import prompt_groups
from brushwork.engine.runners.base import PIPELINE_CLASSES, Role, RunContext, runner_for
from brushwork.errors import ModelUnavailable
from brushwork.models.cache import PipelineCache, PipelineKey
from brushwork.models.catalog import Kind, ModelCatalog
from brushwork.plan import Plan, Result
from brushwork.post.upscale import Upscalers
from brushwork.runtime.device import DevicePolicy, apply_threads, choose, torch_dtype
from brushwork.runtime.memory import peak_bytes, reset_peak
from brushwork.runtime.samplers import scheduler_for
from brushwork.storage.assets import AssetStore


@dataclass
class LoadedPipeline:
    """A cached base pipeline plus the model's own scheduler config, which each run's sampler is built from,
    and the embeddings and LoRAs kept loaded in it."""

    pipe: Any
    scheduler_config: Any
    embeddings: EmbeddingTable = field(default_factory=EmbeddingTable)  # textual inversion, read once
    loras: WarmLoras = field(init=False)
    lora_budget: int = 0

    def __post_init__(self) -> None:
        self.loras = WarmLoras(self.pipe, self.lora_budget)


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
        self.threads = apply_threads(settings.threads)
        self.assets = assets or AssetStore(settings.assets_dir)
        self.cache = PipelineCache(capacity=settings.pipeline_cache_size)
        self.controlnets = PipelineCache(capacity=2 * settings.pipeline_cache_size)
        self.refiners = PipelineCache(capacity=settings.pipeline_cache_size)
        self.vaes = PipelineCache(capacity=2)
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
        return LoadedPipeline(pipe.to(self.policy.device), pipe.scheduler.config,
                              lora_budget=self.settings.lora_cache_mb * 1024 * 1024)

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

    def _refiner(self, plan: Plan, base: Any) -> Any:
        """The Plan's SDXL refiner, kept warm like the ControlNets, using `base`'s VAE and second text encoder."""
        from brushwork.engine.refiner import load_refiner, over_base

        refine = plan.refine
        assert refine is not None and refine.refiner is not None and refine.refiner_sha256 is not None
        name, sha256 = refine.refiner, refine.refiner_sha256

        def load() -> Any:
            entry = self.catalog.get(name)
            path = self._checked(self.catalog.locate(entry), sha256, f"refiner {name!r}")
            return load_refiner(path, base, home=self.settings.home, torch_dtype=torch_dtype(self.policy.dtype),
                                config=entry.config, device=self.policy.device)

        return over_base(self.refiners.get((sha256, self.policy.device, self.policy.dtype), load), base)

    def _vae(self, plan: Plan) -> Any:
        """The Plan's replacement VAE, loaded once and kept warm (hash-checked)."""
        assert plan.vae is not None
        ref = plan.vae

        def load() -> Any:
            vae = load_checked_vae(ref.name, adapter_path(self.catalog, "vae", ref), plan.model.family,
                                   self.settings.home, torch_dtype(self.policy.dtype))
            return vae.to(self.policy.device)

        return self.vaes.get((ref.sha256, plan.model.family, self.policy.device, self.policy.dtype), load)

    @contextmanager
    def _adapters(self, plan: Plan, loaded: LoadedPipeline) -> Iterator[None]:
        """The Plan's LoRAs switched on and its VAE swapped in for one run; afterwards the base model again."""
        base = loaded.pipe
        original_vae = base.vae
        try:
            loaded.loras.activate(plan.loras, lambda ref: adapter_path(self.catalog, "lora", ref))
            if plan.vae is not None:
                base.vae = self._vae(plan)
            yield
        finally:
            loaded.loras.deactivate()
            base.vae = original_vae

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
        report = None if on_progress is None else (lambda _member, event: on_progress(event))
        return self.run_batch([plan], report, cancel)[0]

    def run_batch(
        self,
        plans: Sequence[Plan],
        on_progress: MemberProgress | None = None,
        cancel: CancelToken | None = None,
        preview_every: int = 0,
    ) -> list[Result]:
        """Execute Plans that share a `batch_key()` as few diffusers calls as possible.

        The images of all Plans go through the UNet together (one prompt per
        image, one generator per seed), so each Plan gets the pixels it would
        get alone, up to float rounding of batched kernels. Plans whose prompts
        take different encodings (plain text vs. long-prompt embeddings of
        other lengths) form separate groups. `on_progress(i, event)` reports
        the steps of `plans[i]`; a cancel stops the whole batch. With
        `preview_every` = N, every Nth step's event carries a small JPEG of
        that Plan's first image so far (`engine.preview`).
        """
        import torch

        plans = list(plans)
        if not plans:
            return []
        if len(plans) > 1 and (not plans[0].batch_key() or len({p.batch_key() for p in plans}) > 1):
            raise ValueError("a batch needs Plans with one shared, non-empty batch_key()")
        results: list[Result | None] = [None] * len(plans)
        with self._lock:
            if cancel is not None and cancel.cancelled:
                StepTracker(planned_steps(plans[0]), None, cancel).check_cancelled()
            started = time.perf_counter()
            reset_peak(self.policy.device)
            loaded_pipeline = self.loaded(plans[0])
            base = loaded_pipeline.pipe
            loaded = time.perf_counter()
            with self._adapters(plans[0], loaded_pipeline), torch.inference_mode():
                embeddings = loaded_pipeline.embeddings.lookup(base, self.catalog, self.settings.allow_pickle)
                for members, kwargs in prompt_groups(base, plans, embeddings):
                    group_started = time.perf_counter()
                    images, notes = self._generate([plans[i] for i in members], members, kwargs,
                                                   loaded_pipeline, on_progress, cancel, preview_every)
                    generated = time.perf_counter()
                    offset = 0
                    for index in members:
                        plan = plans[index]
                        own = images[offset:offset + plan.batch_size]
                        offset += plan.batch_size
                        post_started = time.perf_counter()
                        own, filtered = self._finish(own, plan)
                        done = time.perf_counter()
                        results[index] = Result(
                            images=own, plan=plan, filtered=filtered, notes=list(notes),
                            timings={"load": loaded - started, "generate": generated - group_started,
                                     "post": done - post_started, "total": done - started},
                        )
            peak = peak_bytes(self.policy.device)
        runtime = {"device": self.policy.device, "dtype": self.policy.dtype, "threads": self.threads}
        return [dataclasses.replace(result, peak_memory=peak, runtime=dict(runtime))
                for result in results if result is not None]

    def _finish(self, images: list[Any], plan: Plan) -> tuple[list[Any], list[bool]]:
        from brushwork.post.finishing import finish

        return finish(images, plan, self.upscale_image, self.settings.safety_filter)

    def _generate(self, plans: list[Plan], members: list[int], kwargs: dict[str, Any],
                  loaded_pipeline: LoadedPipeline, on_progress: MemberProgress | None,
                  cancel: CancelToken | None, preview_every: int = 0) -> tuple[list[Any], list[str]]:
        """One runner call for Plans that share everything but prompts and seeds: their images in order,
        and the runner's notes."""
        import torch

        plan = plans[0]
        single = len(plans) == 1
        if not single:  # one Plan with every seed; the per-image prompts are in `kwargs`
            plan = plan.model_copy(update={"seeds": tuple(seed for p in plans for seed in p.seeds)})

        def report(event: StepEvent) -> None:
            if on_progress is not None:
                for index in members:
                    on_progress(index, event)

        first_rows = [sum(p.batch_size for p in plans[:k]) for k in range(len(plans))]

        def report_with_previews(event: StepEvent, latents: Any) -> None:
            if on_progress is not None:
                jpegs = latent_jpegs(latents, plan.model.family, first_rows, (plan.width, plan.height))
                for index, jpeg in zip(members, jpegs, strict=True):
                    on_progress(index, dataclasses.replace(event, preview=jpeg))

        tracker = StepTracker(planned_steps(plan), report, cancel, preview_every=preview_every,
                              on_latents=report_with_previews)
        base = loaded_pipeline.pipe
        ctx = RunContext(
            plan=plan,
            # CPU generators: the same seed gives the same noise on every device.
            generators=[torch.Generator("cpu").manual_seed(s) for s in plan.seeds],
            tracker=tracker,
            prompt_kwargs=kwargs,
            images_per_prompt=plan.batch_size if single else 1,
            pipeline=lambda role, control: self._view(plan, base, role, control),
            # A fresh sampler per pass, from the model's own config: nothing leaks between runs.
            new_scheduler=lambda: scheduler_for(plan.sampler, plan.model.family).build(
                loaded_pipeline.scheduler_config, plan.seeds),
            open_image=self.assets.open_rgb,
            open_mask=self.assets.open_mask,
            upscale_image=self.upscale_image,
            refiner=(lambda: self._refiner(plan, base)) if plan.refine is not None else None,
        )
        tracker.begin()
        images = list(runner_for(plan.mode)(plan, ctx))
        return images, ctx.notes
