"""inpaint: repaint the white part of a mask; every other pixel comes back exactly as it went in.

Works with ordinary (4-channel) checkpoints through diffusers' inpaint
pipeline, which re-noises the kept area every step. A1111's options:

* mask blur / invert; the blurred mask softens the seam, and the final
  composite (A1111's overlay) restores every pixel outside it bit for bit;
* masked content: `original` (the init pixels), `fill` (surrounding colours),
  `latent_noise` (seeded noise per image) and `latent_nothing` (flat grey).
  brushwork fills these in pixel space before encoding, an approximation of
  A1111's latent-space fills with the same intent;
* inpaint area `masked` ("only masked"): crop the mask's bounding box plus
  padding, generate it at the Plan's full size, paste it back.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from brushwork.contract.params import Mask
from brushwork.contract.validation import denoising_steps
from brushwork.engine.control import control_arguments
from brushwork.engine.runners.base import RunContext
from brushwork.plan import Plan
from brushwork.runtime.imaging import (
    binarize,
    composite,
    crop_region,
    expand_region,
    fill_masked,
    overlay_mask,
    paste_region,
    prepare_mask,
    resize_to,
)

LATENT_NOTHING_GREY = 127


def starting_images(image: Image.Image, mask: Image.Image, content: str, seeds: tuple[int, ...]) -> list[Image.Image]:
    """The init image with the masked area pre-filled as the masked-content mode says, one per seed."""
    hard = binarize(mask)
    if content == "fill":
        return [fill_masked(image, hard)] * len(seeds)
    if content == "latent_nothing":
        grey = Image.new("RGB", image.size, (LATENT_NOTHING_GREY,) * 3)
        return [composite(image, grey, hard)] * len(seeds)
    if content == "latent_noise":
        noisy = []
        for seed in seeds:
            pixels = np.random.default_rng(seed).integers(0, 256, (image.height, image.width, 3), dtype=np.uint8)
            noisy.append(composite(image, Image.fromarray(pixels), hard))
        return noisy
    return [image] * len(seeds)


def inpaint_pass(plan: Plan, ctx: RunContext, image: Image.Image, mask: Image.Image, strength: float,
                 content: str, control: dict[str, Any] | None) -> list[Image.Image]:
    """One diffusers inpaint pass at the Plan's size; returns the raw generated images."""
    # One image per seed, even when they are equal: diffusers' inpaint pipelines encode the init image
    # with generator[0] only when given one image, which would tie every image of a batch to the first seed.
    starts = starting_images(image, mask, content, plan.seeds)
    return ctx.call("inpaint", control=control, image=starts,
                    mask_image=mask, strength=strength, width=plan.width, height=plan.height, output_type="pil")


def run(plan: Plan, ctx: RunContext) -> list[Any]:
    init, mask = plan.init, plan.mask
    assert init is not None and init.init_image is not None and init.strength is not None
    assert mask is not None and mask.mask_image is not None
    source = ctx.open_image(init.init_image)
    raw_mask = ctx.open_mask(mask.mask_image)
    if mask.inpaint_area == "masked":
        return _only_masked(plan, ctx, source, raw_mask, mask, init.strength)
    resize_mode = init.resize_mode or "just_resize"
    image = resize_to(source, plan.width, plan.height, resize_mode)
    blurred = prepare_mask(raw_mask, plan.width, plan.height, blur=mask.mask_blur or 0,
                           invert=bool(mask.invert_mask), mode=resize_mode)
    if denoising_steps(plan.steps, init.strength) == 0:
        return [image.copy() for _ in plan.seeds]
    generated = inpaint_pass(plan, ctx, image, blurred, init.strength, mask.masked_content or "original",
                             control_arguments(ctx, (plan.width, plan.height), "inpaint"))
    overlay = overlay_mask(blurred)
    return [composite(image, out, overlay) for out in generated]


def _only_masked(plan: Plan, ctx: RunContext, source: Image.Image, raw_mask: Image.Image, mask: Mask,
                 strength: float) -> list[Any]:
    """Generate only the masked region's box (plus padding) at full resolution and paste it back."""
    blurred = prepare_mask(raw_mask, source.width, source.height, blur=mask.mask_blur or 0,
                           invert=bool(mask.invert_mask))
    box = crop_region(binarize(blurred, 1), mask.inpaint_padding or 0)
    if box is None or denoising_steps(plan.steps, strength) == 0:
        return [source.copy() for _ in plan.seeds]  # nothing to repaint
    box = expand_region(box, plan.width, plan.height, source.width, source.height)
    crop_image = resize_to(source.crop(box), plan.width, plan.height, "resize_and_fill")
    crop_mask = resize_to(blurred.crop(box), plan.width, plan.height, "resize_and_fill")
    control = control_arguments(ctx, (plan.width, plan.height), "inpaint", crop=(box, source.size))
    generated = inpaint_pass(plan, ctx, crop_image, crop_mask, strength, mask.masked_content or "original", control)
    return [paste_region(source, out, box, blurred) for out in generated]
