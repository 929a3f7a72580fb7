"""Fit a request and its style to a model family with rules of its own (FLUX.1), saying what changed.

Styles are written for SD: a sampler, steps and cfg tuned for a UNet, a
negative prompt, LoRAs. Run on a FLUX.1 model, what the *style* chose that the
family cannot use is replaced by the family's defaults (sampling) or dropped,
each with a Plan warning; what the *user* asked for that the family cannot do
is refused (`contract.family_rules`), except a negative prompt, which is
dropped with a warning as A1111 Forge does. Pure Python.
"""

from __future__ import annotations

from brushwork.contract.family_rules import (
    FamilyRules,
    check_clip_skip,
    check_sampler,
    rules_for,
)
from brushwork.contract.params import Sampling
from brushwork.contract.prompt_syntax import has_weighting, parse_attention
from brushwork.errors import InvalidRequest
from brushwork.plan import GenerationRequest, Plan
from brushwork.resolve.loras import extract_lora_tags


def fit_sampling(family: str, requested: Sampling, merged: Sampling, defaults: Sampling,
                 style_family: str | None, warnings: list[str]) -> Sampling:
    """The merged sampling, with a style's values for another family replaced by this family's defaults."""
    rules = rules_for(family)
    if rules == FamilyRules():
        return merged
    if style_family != family:
        replaced = {name: getattr(defaults, name) for name in type(merged).model_fields
                    if getattr(requested, name) is None and getattr(merged, name) != getattr(defaults, name)}
        if replaced:
            was = ", ".join(f"{name} {getattr(merged, name)}" for name in replaced)
            now = ", ".join(f"{name} {value}" for name, value in replaced.items())
            warnings.append(f"the style's {was} are for SD models; {rules.label} uses {now}")
            merged = merged.model_copy(update=replaced)
    check_sampler(family, merged.sampler or "")
    check_clip_skip(family, merged.clip_skip or 1)
    if family == "flux" and merged.cfg:
        warnings.append(f"cfg {merged.cfg:g} is FLUX.1's distilled guidance (guidance_scale): guidance-distilled "
                        "models (FLUX.1-dev) read it, FLUX.1-schnell ignores it")
    return merged


def fit_plan(plan: Plan, request: GenerationRequest) -> Plan:
    """Drop, with a warning, what the style (or the request's negative prompt) gives that the family cannot use."""
    rules = rules_for(plan.model.family)
    if rules == FamilyRules():
        return plan
    warnings, update = list(plan.warnings), {}
    name = f"{rules.label} models"
    if plan.negative_prompt and not rules.negative_prompt:
        source = "your" if request.negative_prompt else "the style's"
        warnings.append(f"{name} take no negative prompt: {source} negative prompt is not used")
        update["negative_prompt"] = ""
    if not rules.adapters and (request.loras or extract_lora_tags(request.prompt)[1]):
        raise InvalidRequest("lora", f"LoRAs are not supported for {name} yet")
    if plan.model.family == "flux" and any(has_weighting(parse_attention(text))
                                           for text in (plan.prompt, plan.negative_prompt)):
        warnings.append(f"{name} read the prompt as plain text: A1111 emphasis like (word:1.2) is not applied")
    if not rules.adapters and (plan.loras or plan.vae or plan.embeddings):
        warnings.append(f"the style's LoRAs/VAE/embeddings are not applied: not supported for {name} yet")
        update.update(loras=(), vae=None, embeddings=())
    if not rules.controlnet and plan.controls and request.controls is None:
        warnings.append(f"the style's ControlNets are not applied: not supported for {name}")
        update["controls"] = ()
    if not rules.hires and plan.hires is not None and request.hires.is_empty():
        warnings.append(f"the style's hires fix is not applied: not supported for {name}")
        update["hires"] = None
    if not update:
        return plan
    return plan.model_copy(update={**update, "warnings": tuple(warnings)})
