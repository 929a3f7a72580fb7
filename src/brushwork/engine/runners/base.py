"""What every runner receives, and the table that maps a Plan's mode to one.

A runner is a function `run(plan, ctx) -> images` plus a declaration of what
it needs. It asks the context for a pipeline by *role* (txt2img, img2img,
inpaint); the engine hands out a view over the cached base pipeline
(diffusers `from_pipe`), with the Plan's ControlNets attached when it has
any, so every mode shares the one loaded UNet, VAE and text encoders.

Runners are referenced as "module:function" strings and imported on first
use, so adding a mode is one new module plus one table row.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from brushwork.contract.assets import AssetRef
from brushwork.contract.families import Family
from brushwork.engine.progress import StepTracker
from brushwork.errors import NotFound
from brushwork.plan import Plan

Role = Literal["txt2img", "img2img", "inpaint"]

RUNNERS: dict[str, str] = {
    "txt2img": "brushwork.engine.runners.txt2img:run",
    "img2img": "brushwork.engine.runners.img2img:run",
    "inpaint": "brushwork.engine.runners.inpaint:run",
    "outpaint": "brushwork.engine.runners.outpaint:run",
}

# (family, role, with ControlNet) → diffusers pipeline class, built as a view of the cached base pipeline.
PIPELINE_CLASSES: dict[tuple[Family, Role, bool], str] = {
    ("sd15", "txt2img", False): "StableDiffusionPipeline",
    ("sd15", "img2img", False): "StableDiffusionImg2ImgPipeline",
    ("sd15", "inpaint", False): "StableDiffusionInpaintPipeline",
    ("sd15", "txt2img", True): "StableDiffusionControlNetPipeline",
    ("sd15", "img2img", True): "StableDiffusionControlNetImg2ImgPipeline",
    ("sd15", "inpaint", True): "StableDiffusionControlNetInpaintPipeline",
    ("sdxl", "txt2img", False): "StableDiffusionXLPipeline",
    ("sdxl", "img2img", False): "StableDiffusionXLImg2ImgPipeline",
    ("sdxl", "inpaint", False): "StableDiffusionXLInpaintPipeline",
    ("sdxl", "txt2img", True): "StableDiffusionXLControlNetPipeline",
    ("sdxl", "img2img", True): "StableDiffusionXLControlNetImg2ImgPipeline",
    ("sdxl", "inpaint", True): "StableDiffusionXLControlNetInpaintPipeline",
    ("flux", "txt2img", False): "FluxPipeline",
    ("flux", "img2img", False): "FluxImg2ImgPipeline",
}


@dataclass
class RunContext:
    """Everything a runner needs besides the Plan: pipelines, inputs, seeds, progress."""

    plan: Plan
    generators: list[Any]
    tracker: StepTracker
    prompt_kwargs: dict[str, Any]
    pipeline: Callable[[Role, bool], Any]  # (role, with ControlNet) → a pipeline view
    new_scheduler: Callable[[], Any]  # a fresh sampler from the model's own config
    open_image: Callable[[AssetRef], Any]  # RGB PIL image from the asset store
    open_mask: Callable[[AssetRef], Any]  # "L" PIL image from the asset store
    upscale_image: Callable[[Any, str, float, str | None], Any]  # (image, upscaler, scale, sha256) → image
    refiner: Callable[[], Any] | None = None  # the Plan's SDXL refiner over the base's VAE/text encoder 2; None: none
    images_per_prompt: int = 1  # the Plan's batch size for one prompt; 1 when each image has its own prompt
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what had to be done differently; ends up in Result.notes

    def diffusers_callback(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        """diffusers' `callback_on_step_end`: progress, and `Cancelled` raised between steps."""
        self.tracker.timestep_done(step, len(pipe.scheduler.timesteps), pipe.scheduler.order,
                                   callback_kwargs.get("latents"))
        return callback_kwargs

    def call(self, role: Role, *, stage: str = "generate", steps: int | None = None,
             control: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        """Run one diffusers pass with the Plan's prompt, cfg, seeds and a fresh sampler.

        `control` holds the ControlNet arguments (images, scales, start/end) or is
        None for a pass without ControlNet. Returns the pipeline output's `.images`.
        With a float16 VAE the images are decoded by `engine.decode` (float32 retry
        on NaN/inf, recorded in `notes`); any other pass is diffusers' own, unchanged.
        """
        from brushwork.engine.decode import safe_images

        pipe = self.pipeline(role, bool(control))
        pipe.scheduler = self.new_scheduler()
        output_type = kwargs.pop("output_type", "pil")
        self.tracker.begin(stage)

        def run(kind: str) -> Any:
            return pipe(
                **self.prompt_kwargs,
                **(control or {}),
                **kwargs,
                output_type=kind,
                num_inference_steps=steps or self.plan.steps,
                guidance_scale=self.plan.cfg,
                num_images_per_prompt=self.images_per_prompt,
                generator=self.generators,
                callback_on_step_end=self.diffusers_callback,
            )

        return safe_images(pipe, run, output_type=output_type, sdxl=self.plan.model.family == "sdxl",
                           seeds=self.plan.seeds, stage=stage, notes=self.notes, kwargs=kwargs)


Runner = Callable[[Plan, RunContext], list[Any]]


def runner_for(mode: str) -> Runner:
    target = RUNNERS.get(mode)
    if target is None:
        raise NotFound("mode", mode, RUNNERS)
    module_name, attr = target.split(":")
    return getattr(importlib.import_module(module_name), attr)
