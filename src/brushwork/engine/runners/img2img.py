"""img2img: start from an init image (resized A1111's way) and denoise `strength` of the way."""

from __future__ import annotations

from typing import Any

from brushwork.contract.validation import denoising_steps
from brushwork.engine.control import control_arguments
from brushwork.engine.runners.base import RunContext
from brushwork.plan import Plan
from brushwork.runtime.imaging import resize_to


def run(plan: Plan, ctx: RunContext) -> list[Any]:
    init = plan.init
    assert init is not None and init.init_image is not None and init.strength is not None
    image = resize_to(ctx.open_image(init.init_image), plan.width, plan.height, init.resize_mode or "just_resize")
    if denoising_steps(plan.steps, init.strength) == 0:
        return [image.copy() for _ in plan.seeds]  # nothing to denoise: the init image itself
    inputs: dict[str, Any] = {"image": image}
    if plan.model.family == "flux":
        # FluxImg2ImgPipeline sizes its output 1024x1024 unless told, and encodes a single init image with the
        # first seed's generator only, which would tie every image of a batch to seed 0: one image per seed.
        inputs = {"image": [image] * len(plan.seeds), "width": plan.width, "height": plan.height}
    return ctx.call("img2img", control=control_arguments(ctx, (plan.width, plan.height), "img2img"),
                    strength=init.strength, output_type="pil", **inputs)
