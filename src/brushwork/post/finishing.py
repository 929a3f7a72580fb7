"""The post chain a Plan asks for, after generation: upscalers, exact resize, safety filter.

The chain is the seed's "community upscalers" idea done as data: each step
names an upscaler model (or Lanczos) and a factor, then an optional Lanczos
resize to an exact size; a diffusion upscale comes before it as hires fix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brushwork.plan import Plan
from brushwork.post.safety import apply_filter

UpscaleFn = Callable[[Any, str, float, "str | None"], Any]


def finish(images: list[Any], plan: Plan, upscale: UpscaleFn, safety_filter: str | None,
           ) -> tuple[list[Any], list[bool]]:
    """Apply the Plan's post chain to every image, then the deployment's safety filter."""
    post = plan.post
    if post is not None:
        from brushwork.post.upscale import lanczos

        finished = []
        for image in images:
            for step in post.upscale or ():
                image = upscale(image, step.upscaler, step.scale, step.sha256)
            if post.resize_to is not None and image.size != tuple(post.resize_to):
                image = lanczos(image, *post.resize_to)
            finished.append(image)
        images = finished
    return apply_filter(images, safety_filter)
