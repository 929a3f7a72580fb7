"""ControlNet arguments for a pipeline call: preprocessed maps at the pass's size.

Each unit's image is preprocessed (canny, or used as a ready-made map for any
other type: openpose, depth, lineart, scribble, tile), cropped like the init
image when only the masked region is generated, and resized to the size of
the pass. One unit passes scalars; several pass lists (diffusers'
MultiControlNet).
"""

from __future__ import annotations

from typing import Any

from brushwork.engine.runners.base import Role, RunContext
from brushwork.runtime.imaging import Box, canny, resize_to


def control_arguments(ctx: RunContext, size: tuple[int, int], role: Role, crop: tuple[Box, tuple[int, int]] | None = None,
                      ) -> dict[str, Any] | None:
    """The ControlNet keyword arguments for one pass, or None when the Plan has no ControlNet.

    `crop` = (box, source size): the map is first fitted to the init image's
    own size, then cut to the box that "only masked" inpainting generates.
    """
    units = ctx.plan.controls
    if not units:
        return None
    images = []
    for unit in units:
        assert unit.image is not None  # a checked Plan has every control image
        image = ctx.open_image(unit.image)
        if unit.preprocessor == "canny":
            image = canny(image, unit.low_threshold, unit.high_threshold)
        if crop is not None:
            box, source_size = crop
            image = resize_to(image, *source_size, "just_resize").crop(box)
        images.append(resize_to(image, size[0], size[1], "just_resize"))
    key = "image" if role == "txt2img" else "control_image"
    single = len(units) == 1
    return {
        key: images[0] if single else images,
        "controlnet_conditioning_scale": units[0].scale if single else [u.scale for u in units],
        "control_guidance_start": units[0].start if single else [u.start for u in units],
        "control_guidance_end": units[0].end if single else [u.end for u in units],
    }
