"""One check of a Plan against this deployment's limits.

Plans are checked once where they enter — made by resolve, read from a PNG,
received from another process — and the engine trusts a checked Plan. The
messages name the user's field (`width`, `steps`, `mask_blur`) and what is
allowed, because the same check guards a request's values after merging.
"""

from __future__ import annotations

import unicodedata

from brushwork.config import Limits
from brushwork.contract.family_rules import check_family
from brushwork.contract.params import (
    GROUPS,
    LANCZOS,
    LATENT_UPSCALER,
    Group,
    Sampling,
    Size,
    missing_fields,
)
from brushwork.contract.samplers import canonical_sampler
from brushwork.errors import InvalidRequest
from brushwork.plan import SEED_MAX, Plan

ALLOWED_CONTROL_CHARS = "\n\t"
INPAINT_MODES = ("inpaint", "outpaint")  # what a dedicated inpainting model can run
# Which optional groups each mode needs (True) or forbids (False).
MODE_GROUPS: dict[str, dict[str, bool]] = {
    "txt2img": {"init": False, "mask": False, "outpaint": False},
    "img2img": {"init": True, "mask": False, "outpaint": False, "refine": False},
    "inpaint": {"init": True, "mask": True, "outpaint": False, "refine": False},
    "outpaint": {"init": True, "mask": False, "outpaint": True, "refine": False},
}


def number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def check_range(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(field, f"must be between {number(low)} and {number(high)}, got {number(value)}")


def check_size(field: str, value: int, limits: Limits) -> None:
    if value % 8:
        raise InvalidRequest(field, f"must be a multiple of 8, got {value}")
    check_range(field, value, limits.min_size, limits.max_size)


def check_text(field: str, text: str, limits: Limits) -> None:
    """Prompts: bounded length, and no control characters that could reach a terminal or log."""
    if len(text) > limits.max_prompt_chars:
        raise InvalidRequest(field, f"is {len(text)} characters; the limit is {limits.max_prompt_chars}")
    for char in text:
        if char not in ALLOWED_CONTROL_CHARS and unicodedata.category(char) == "Cc":
            raise InvalidRequest(field, f"contains the control character {ascii(char)}; remove it")


def check_seeds(seed: int, batch_size: int) -> None:
    """Image i uses seed+i, so the last seed of a batch must still be a valid seed (no wrap-around)."""
    check_range("seed", seed, 0, SEED_MAX)
    if seed + batch_size - 1 > SEED_MAX:
        raise InvalidRequest(
            "seed", f"seed + batch_size - 1 must be at most {SEED_MAX} (image i uses seed+i), got {seed}"
        )


def check_sampling_and_size(sampling: Sampling, size: Size, limits: Limits) -> None:
    """Limits on the fields that are decided; a request checks these before any model is looked up."""
    if size.width is not None:
        check_size("width", size.width, limits)
    if size.height is not None:
        check_size("height", size.height, limits)
    if sampling.steps is not None:
        check_range("steps", sampling.steps, 1, limits.max_steps)
    if sampling.sampler is not None:
        canonical_sampler(sampling.sampler)


def _complete(name: str, group: Group) -> None:
    missing = missing_fields(group)
    if missing:
        raise InvalidRequest(missing[0], f"must be set ({name} is incomplete)")


def validate_plan(plan: Plan, limits: Limits) -> None:
    """Raise `InvalidRequest` naming the first field of `plan` that this deployment does not allow."""
    for name in GROUPS:
        group = getattr(plan, name)
        if group is not None:
            _complete(name, group)
    for name, needed in MODE_GROUPS[plan.mode].items():
        present = getattr(plan, name) is not None
        if present != needed:
            raise InvalidRequest(name, f"{'is required' if needed else 'does not apply'} in {plan.mode} mode")
    if plan.model.variant == "inpaint" and plan.mode not in INPAINT_MODES:
        raise InvalidRequest("model", f"{plan.model.name!r} is an inpainting model: it needs an init image and "
                                      f"a mask (or --outpaint), not {plan.mode}")
    if plan.model.variant == "refiner" and plan.mode != "img2img":
        raise InvalidRequest("model", f"{plan.model.name!r} is an SDXL refiner: it only finishes images (img2img)")
    check_sampling_and_size(plan.sampling, plan.size, limits)
    check_range("batch_size", plan.batch_size, 1, limits.max_batch)
    check_text("prompt", plan.prompt, limits)
    check_text("negative_prompt", plan.negative_prompt, limits)
    if canonical_sampler(plan.sampler) != plan.sampler:
        raise InvalidRequest("sampler", f"a Plan names samplers canonically, e.g. {canonical_sampler(plan.sampler)!r}")
    if plan.outpaint is not None and not any(plan.outpaint.sides()):
        raise InvalidRequest("outpaint", "extend at least one side by a positive number of pixels")
    _check_controls(plan)
    _check_hires(plan, limits)
    _check_refine(plan)
    if len(plan.loras) > limits.max_loras:
        raise InvalidRequest("lora", f"{len(plan.loras)} LoRAs; the limit is {limits.max_loras}")
    _check_post(plan, limits)
    check_family(plan)  # what the model family cannot do (e.g. FLUX.1: samplers, negative prompt)


def _check_controls(plan: Plan) -> None:
    for index, unit in enumerate(plan.controls):
        where = f"control {index + 1} ({unit.model})"
        if unit.image is None:
            raise InvalidRequest("control", f"{where} has no image")
        if unit.sha256 is None:
            raise InvalidRequest("control", f"{where} is not pinned to a file hash")
        if unit.start >= unit.end:
            raise InvalidRequest("control", f"{where}: start ({unit.start:g}) must be before end ({unit.end:g})")
        if unit.low_threshold > unit.high_threshold:
            raise InvalidRequest("control", f"{where}: canny low threshold must not exceed the high one")


def hires_size(plan: Plan) -> tuple[int, int]:
    """The second pass's size: base size × hr_scale, rounded down to a multiple of 8 (as A1111)."""
    assert plan.hires is not None and plan.hires.hr_scale is not None
    scale = plan.hires.hr_scale
    return int(plan.width * scale) // 8 * 8, int(plan.height * scale) // 8 * 8


def _check_hires(plan: Plan, limits: Limits) -> None:
    hires = plan.hires
    if hires is None:
        return
    if plan.mode != "txt2img":
        raise InvalidRequest("hr_scale", f"hires fix applies to txt2img only, not {plan.mode}")
    width, height = hires_size(plan)
    if max(width, height) > limits.max_size:
        raise InvalidRequest("hr_scale", f"{plan.width}x{plan.height} × {hires.hr_scale:g} = {width}x{height} "
                                         f"exceeds the size limit {limits.max_size}")
    check_range("hr_steps", hires.hr_steps or 0, 0, limits.max_steps)
    assert hires.hr_denoise is not None
    second = hires.hr_steps or plan.steps
    if denoising_steps(second, hires.hr_denoise) < 1:
        raise InvalidRequest("hr_denoise", f"the hires pass would run no step ({second} steps × denoise "
                                           f"{hires.hr_denoise:g} < 1); raise hr_denoise or hr_steps")
    if hires.hr_upscaler not in (LATENT_UPSCALER, LANCZOS) and hires.hr_upscaler_sha256 is None:
        raise InvalidRequest("hr_upscaler", f"{hires.hr_upscaler!r} is not pinned to a file hash")


def _check_refine(plan: Plan) -> None:
    refine = plan.refine
    if refine is None:
        return
    if plan.model.family != "sdxl":
        raise InvalidRequest("refiner", f"a refiner hands over from an SDXL base model; {plan.model.name!r} "
                                        f"is a {plan.model.family} model")
    if refine.refiner_sha256 is None:
        raise InvalidRequest("refiner", f"{refine.refiner!r} is not pinned to a file hash")


def _check_post(plan: Plan, limits: Limits) -> None:
    post = plan.post
    if post is None:
        return
    total = 1.0
    for step in post.upscale or ():
        total *= step.scale
        if step.upscaler != LANCZOS and step.sha256 is None:
            raise InvalidRequest("upscale", f"{step.upscaler!r} is not pinned to a file hash")
    if total > limits.max_upscale:
        raise InvalidRequest("upscale", f"the chain upscales {total:g}×; the limit is {limits.max_upscale:g}×")
    if post.resize_to is not None:
        largest = limits.max_size * limits.max_upscale
        if max(post.resize_to) > largest:
            raise InvalidRequest("resize_to", f"{post.resize_to[0]}x{post.resize_to[1]} exceeds {largest:g} pixels a side")


def denoising_steps(steps: int, strength: float) -> int:
    """Steps an img2img pass really runs: diffusers (like A1111) skips the first (1-strength) of them."""
    return min(int(steps * strength), steps)


def planned_steps(plan: Plan) -> int:
    """Solver steps the whole Plan runs, over all passes: the total a progress bar counts to.

    A refiner hand-off splits one schedule of `steps` between the base model
    (before the switch) and the refiner (after it), so together they count `steps`.
    """
    if plan.mode == "txt2img":
        total = plan.steps  # base (+ refiner: the rest of the same schedule)
        if plan.hires is not None:
            assert plan.hires.hr_denoise is not None
            total += denoising_steps(plan.hires.hr_steps or plan.steps, plan.hires.hr_denoise)
        return total
    assert plan.init is not None and plan.init.strength is not None
    return denoising_steps(plan.steps, plan.init.strength)
