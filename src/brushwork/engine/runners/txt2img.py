"""txt2img: noise → image, for SD 1.5 and SDXL pipelines alike."""

from __future__ import annotations

from typing import Any

from brushwork.engine.runners.base import RunContext
from brushwork.plan import Plan


def run(pipe: Any, plan: Plan, ctx: RunContext) -> list[Any]:
    """Denoise `plan.batch_size` images, image i from `ctx.generators[i]`."""
    output = pipe(
        **ctx.prompt_kwargs,
        width=plan.width,
        height=plan.height,
        num_inference_steps=plan.steps,
        guidance_scale=plan.cfg,
        num_images_per_prompt=plan.batch_size,
        generator=ctx.generators,
        callback_on_step_end=ctx.diffusers_callback,
        output_type="pil",
    )
    return list(output.images)
