"""txt2img: noise → image, for SD 1.5 and SDXL, with ControlNet and A1111's hires fix.

Hires fix: generate at the base size, upscale (in latent space, or as images
with Lanczos or an upscaler model), then an img2img pass at the bigger size
with `hr_denoise` strength and `hr_steps` steps (0 = the base steps).
"""

from __future__ import annotations

from typing import Any

from brushwork.contract.params import LATENT_UPSCALER
from brushwork.contract.validation import hires_size
from brushwork.engine.control import control_arguments
from brushwork.engine.runners.base import RunContext
from brushwork.plan import Plan
from brushwork.runtime.imaging import resize_to


def run(plan: Plan, ctx: RunContext) -> list[Any]:
    """Denoise `plan.batch_size` images, image i from `ctx.generators[i]`; then the hires pass if asked."""
    control = control_arguments(ctx, (plan.width, plan.height), "txt2img")
    if plan.hires is None:
        return ctx.call("txt2img", control=control, width=plan.width, height=plan.height, output_type="pil")
    hires = plan.hires
    width, height = hires_size(plan)
    latent = hires.hr_upscaler == LATENT_UPSCALER
    first = ctx.call("txt2img", control=control, width=plan.width, height=plan.height,
                     output_type="latent" if latent else "pil")
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
