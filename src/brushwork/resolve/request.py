"""Checks of a request that need no style or model, and the choices made from the request alone.

They fail fast, before any model is looked up, with the field's name; the
merged Plan is checked again by `brushwork.contract.validation`.
"""

from __future__ import annotations

import secrets

from brushwork.config import Limits
from brushwork.contract.params import Group
from brushwork.contract.validation import (
    check_range,
    check_sampling_and_size,
    check_seeds,
    check_text,
)
from brushwork.errors import InvalidRequest
from brushwork.plan import SEED_MAX, GenerationRequest, Mode


def validate_request(request: GenerationRequest, limits: Limits) -> None:
    """Checks that need no style or model: fail fast with the field's name."""
    if not request.prompt:
        raise InvalidRequest("prompt", "must not be empty")
    check_text("prompt", request.prompt, limits)
    if request.negative_prompt:
        check_text("negative_prompt", request.negative_prompt, limits)
    check_range("batch_size", request.batch_size, 1, limits.max_batch)
    if request.seed is not None:
        check_seeds(request.seed, request.batch_size)
    check_sampling_and_size(request.sampling, request.size, limits)
    for group in (request.init, request.mask, request.hires):
        _needs_input(group)
    if request.model is not None and not request.model:
        raise InvalidRequest("model", "must not be empty (leave it out for the style's model)")
    if not request.outpaint.is_empty():
        if request.init.init_image is None:
            raise InvalidRequest("outpaint", "needs an init image to extend (init_image)")
        if not any(request.outpaint.sides()):
            raise InvalidRequest("outpaint", "extend at least one side by a positive number of pixels")
        if request.mask.mask_image is not None:
            raise InvalidRequest("mask_image", "outpainting makes its own mask (the new area); leave the mask out")
        if not request.size.is_empty():
            raise InvalidRequest("size", "outpainting's size is the init image plus the extension; leave it out")
    if not request.mask.is_empty() and request.init.init_image is None:
        raise InvalidRequest("mask_image", "needs an init image to inpaint (init_image)")


def _needs_input(group: Group) -> None:
    """Options of a group whose key input is missing would silently do nothing: refuse them."""
    if group.is_empty():
        return
    for name in type(group).required_input:
        if getattr(group, name) is None:
            given = next(k for k in type(group).model_fields if getattr(group, k) is not None)
            raise InvalidRequest(given, f"needs {name} to be given too")


def seeds_for(seed: int | None, batch_size: int) -> tuple[int, ...]:
    """Image i gets seed+i; no seed means a random one (small enough not to pass 2^32-1), reported in the Plan."""
    base = secrets.randbelow(SEED_MAX + 2 - batch_size) if seed is None else seed
    return tuple(base + i for i in range(batch_size))


def mode_of(request: GenerationRequest) -> Mode:
    if request.init.init_image is None:
        return "txt2img"
    if any(request.outpaint.sides()):
        return "outpaint"
    return "inpaint" if request.mask.mask_image is not None else "img2img"
