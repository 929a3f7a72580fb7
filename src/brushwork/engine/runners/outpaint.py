"""outpaint: extend the canvas by N pixels left/right/up/down and inpaint the new area.

The new area starts from the stretched edge pixels and is fully denoised
(strength defaults to 1 in this mode); the original canvas region is kept
bit for bit by the final composite. The mask is softened into the new area
only, so the seam blends without touching a single original pixel.
"""

from __future__ import annotations

from typing import Any

from PIL import ImageChops

from brushwork.contract.validation import denoising_steps
from brushwork.engine.control import control_arguments
from brushwork.engine.runners.base import RunContext
from brushwork.engine.runners.inpaint import inpaint_pass
from brushwork.plan import Plan
from brushwork.runtime.imaging import blur_mask, composite, extend_canvas

SEAM_BLUR = 8


def run(plan: Plan, ctx: RunContext) -> list[Any]:
    init, outpaint = plan.init, plan.outpaint
    assert init is not None and init.init_image is not None and init.strength is not None and outpaint is not None
    canvas, mask = extend_canvas(ctx.open_image(init.init_image), *outpaint.sides(), fill="edge")
    assert canvas.size == (plan.width, plan.height), "resolve sizes the Plan to the extended canvas"
    if denoising_steps(plan.steps, init.strength) == 0:
        return [canvas.copy() for _ in plan.seeds]
    soft = ImageChops.darker(blur_mask(mask, SEAM_BLUR), mask)  # blurred, but zero on the original area
    generated = inpaint_pass(plan, ctx, canvas, mask, init.strength, "original",
                             control_arguments(ctx, canvas.size, "inpaint"))
    return [composite(canvas, out, soft) for out in generated]
