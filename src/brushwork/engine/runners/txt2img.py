"""txt2img: noise → image, for SD 1.5 and SDXL, with ControlNet, an SDXL refiner and A1111's hires fix.

Refiner (SDXL): the base model denoises the first `refiner_switch` of the
schedule and hands its latents over (diffusers `denoising_end`), the refiner
finishes the same schedule (`denoising_start`: same steps, a fresh sampler of
the same kind, the same seeds' generators and prompts). Switch 1.0 is the base
alone, bit for bit: the refiner is not even loaded.

Hires fix: generate at the base size, upscale (in latent space, or as images
with Lanczos or an upscaler model), then an img2img pass at the bigger size
with `hr_denoise` strength and `hr_steps` steps (0 = the base steps). With a
refiner, the refiner finishes the first pass (as A1111 does when the switch
falls inside it) and the base model runs the hires pass.
"""

from __future__ import annotations

from typing import Any

from brushwork.contract.params import LATENT_UPSCALER
from brushwork.contract.validation import hires_size
from brushwork.engine.control import control_arguments
from brushwork.engine.runners.base import RunContext
from brushwork.plan import Plan
from brushwork.runtime.imaging import resize_to


def refiner_runs(plan: Plan) -> bool:
    """Whether the Plan hands over to a refiner at all (switch 1.0 = the base runs every step)."""
    return plan.refine is not None and (plan.refine.refiner_switch or 1.0) < 1.0


def _first_pass(plan: Plan, ctx: RunContext, output_type: str) -> Any:
    """The base-size pass: the base model alone, or the base handing over to the refiner."""
    control = control_arguments(ctx, (plan.width, plan.height), "txt2img")
    if not refiner_runs(plan):
        return ctx.call("txt2img", control=control, width=plan.width, height=plan.height, output_type=output_type)
    assert plan.refine is not None and ctx.refiner is not None
    switch = plan.refine.refiner_switch
    latents = ctx.call("txt2img", control=control, width=plan.width, height=plan.height,
                       denoising_end=switch, output_type="latent")
    return _refine(plan, ctx, latents, switch or 1.0, output_type)


def _refine(plan: Plan, ctx: RunContext, latents: Any, switch: float, output_type: str) -> Any:
    """The refiner's share of the schedule, continuing from the base's latents."""
    from brushwork.engine.decode import safe_images
    from brushwork.engine.refiner import refiner_prompt_kwargs

    assert ctx.refiner is not None
    pipe = ctx.refiner()
    pipe.scheduler = ctx.new_scheduler()
    ctx.tracker.begin("refine")

    def run(kind: str) -> Any:
        return pipe(
            **refiner_prompt_kwargs(pipe, ctx.prompt_kwargs),
            image=latents,
            denoising_start=switch,
            num_inference_steps=plan.steps,
            guidance_scale=plan.cfg,
            num_images_per_prompt=ctx.images_per_prompt,
            generator=ctx.generators,
            callback_on_step_end=_continuing(ctx),
            output_type=kind,
        )

    # the refiner shares the base's VAE: a float16 decode gets the same NaN-safe fp32 retry
    return safe_images(pipe, run, output_type=output_type, sdxl=True, seeds=plan.seeds, stage="refine",
                       notes=ctx.notes)


def _continuing(ctx: RunContext) -> Any:
    """Progress for a pass that starts inside the schedule: steps are numbered from where the base stopped.

    diffusers numbers the refiner's steps from 0 but slices the sampler's full
    timestep list at `begin_index`; counting solver steps (two model calls each
    for Heun) needs the position in the full list.
    """

    def callback(pipe: Any, step: int, timestep: Any, callback_kwargs: dict[str, Any]) -> dict[str, Any]:
        offset = getattr(pipe.scheduler, "begin_index", None) or 0
        return ctx.diffusers_callback(pipe, step + offset, timestep, callback_kwargs)

    return callback


def run(plan: Plan, ctx: RunContext) -> list[Any]:
    """Denoise `plan.batch_size` images, image i from `ctx.generators[i]`; then the hires pass if asked."""
    if plan.hires is None:
        return _first_pass(plan, ctx, "pil")
    hires = plan.hires
    width, height = hires_size(plan)
    latent = hires.hr_upscaler == LATENT_UPSCALER
    first = _first_pass(plan, ctx, "latent" if latent else "pil")
    if latent:
        import torch.nn.functional as functional

        # A1111's "Latent" upscaler: bilinear in latent space, no antialiasing.
        image: Any = functional.interpolate(first, size=(height // 8, width // 8), mode="bilinear",
                                            antialias=False)
    else:
        image = [resize_to(ctx.upscale_image(img, hires.hr_upscaler or "", hires.hr_scale or 1.0,
                                             hires.hr_upscaler_sha256), width, height, "just_resize")
                 for img in first]
    return ctx.call("img2img", stage="hires", steps=hires.hr_steps or plan.steps,
                    control=control_arguments(ctx, (width, height), "img2img"),
                    image=image, strength=hires.hr_denoise, output_type="pil")
