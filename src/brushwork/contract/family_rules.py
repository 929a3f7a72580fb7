"""What a model family accepts beyond the common contract, declared once per family.

SD 1.5 and SDXL accept everything the contract has. FLUX.1 is a flow-matching
transformer with two text encoders read at fixed layers and no negative
prompt; brushwork runs it for txt2img and img2img only. One check of a Plan
(`check_family`, called by `validate_plan`) refuses what a family cannot do,
naming the field and what is allowed, so a Plan from a PNG or another process
gets the same answer as a request. Pure Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from brushwork.contract.samplers import canonical_sampler
from brushwork.errors import InvalidRequest
from brushwork.plan import Plan


@dataclass(frozen=True)
class FamilyRules:
    """A family's limits; the defaults are SD's (no limits beyond the contract)."""

    label: str = ""
    samplers: tuple[str, ...] | None = None  # canonical ids; None = every contract sampler
    size_multiple: int = 8
    negative_prompt: bool = True
    clip_skip: bool = True
    modes: tuple[str, ...] = ("txt2img", "img2img", "inpaint", "outpaint")
    controlnet: bool = True
    hires: bool = True
    adapters: bool = True  # LoRAs, VAE swap, textual-inversion embeddings


FAMILY_RULES: dict[str, FamilyRules] = {
    # A1111 Forge and ComfyUI call FLUX's flow-matching Euler step "Euler" (schedule "Simple").
    "flux": FamilyRules(label="FLUX.1", samplers=("Euler",), size_multiple=16, negative_prompt=False,
                        clip_skip=False, modes=("txt2img", "img2img"), controlnet=False, hires=False,
                        adapters=False),
}


def rules_for(family: str) -> FamilyRules:
    return FAMILY_RULES.get(family, FamilyRules())


def check_sampler(family: str, sampler: str) -> None:
    """Refuse a sampler that makes no sense for the family (e.g. DPM++ on flow matching), listing the valid ones."""
    rules = rules_for(family)
    if rules.samplers is not None and canonical_sampler(sampler) not in rules.samplers:
        raise InvalidRequest("sampler", f"{sampler!r} does not apply to {rules.label} models (flow matching); "
                                        f"valid: {', '.join(rules.samplers)}")


def check_clip_skip(family: str, clip_skip: int) -> None:
    rules = rules_for(family)
    if not rules.clip_skip and clip_skip != 1:
        raise InvalidRequest("clip_skip", f"does not apply to {rules.label} models (their text encoders are read "
                                          f"at fixed layers); leave it at 1, got {clip_skip}")


def check_family(plan: Plan) -> None:
    """Raise `InvalidRequest` for the first thing in `plan` its model family cannot do."""
    family = plan.model.family
    rules = rules_for(family)
    if rules == FamilyRules():
        return
    name = f"{rules.label} models"
    check_sampler(family, plan.sampler)
    check_clip_skip(family, plan.clip_skip)
    if plan.mode not in rules.modes:
        raise InvalidRequest("mode", f"{plan.mode} is not supported for {name}; supported: {', '.join(rules.modes)}")
    for field, value in (("width", plan.width), ("height", plan.height)):
        if value % rules.size_multiple:
            raise InvalidRequest(field, f"must be a multiple of {rules.size_multiple} for {name}, got {value}")
    if not rules.negative_prompt and plan.negative_prompt:
        raise InvalidRequest("negative_prompt", f"{name} take no negative prompt; leave it empty")
    if not rules.controlnet and plan.controls:
        raise InvalidRequest("control", f"ControlNet is not supported for {name}")
    if not rules.hires and plan.hires is not None:
        raise InvalidRequest("hr_scale", f"hires fix is not supported for {name}")
    if not rules.adapters:
        for field, present in (("lora", plan.loras), ("vae", plan.vae), ("embeddings", plan.embeddings)):
            if present:
                raise InvalidRequest(field, f"{'LoRAs' if field == 'lora' else field} are not supported for "
                                            f"{name} yet")
