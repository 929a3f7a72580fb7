"""GenerationRequest + style + catalog → Plan.

This is where every default is decided, once: after it, the Plan says
everything and the engine makes no choices of its own. Pure Python: torch is
imported only to build the demo model on its first use.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from pydantic import ValidationError

from brushwork.config import Family, Limits
from brushwork.errors import InvalidRequest, NotFound
from brushwork.models.catalog import CatalogEntry, ModelCatalog
from brushwork.models.hashing import lora_short_hash, short_hash
from brushwork.plan import SEED_MAX, AdapterRef, GenerationRequest, ModelRef, Plan, invalid_from_validation
from brushwork.runtime.samplers import from_plan, get_sampler
from brushwork.styles.recipe import Recipe
from brushwork.styles.registry import StyleRegistry

CFG_MAX = 30.0
CLIP_SKIP_MAX = 12


@dataclass(frozen=True)
class FamilyDefaults:
    width: int
    height: int
    steps: int
    cfg: float
    sampler: str


FAMILY_DEFAULTS: dict[Family, FamilyDefaults] = {
    "sd15": FamilyDefaults(512, 512, 25, 7.0, "DPM++ 2M Karras"),
    "sdxl": FamilyDefaults(1024, 1024, 30, 6.0, "DPM++ 2M Karras"),
}


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_range(field: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise InvalidRequest(field, f"must be between {_number(low)} and {_number(high)}, got {_number(value)}")


def _check_size(field: str, value: int, limits: Limits) -> None:
    if value % 8:
        raise InvalidRequest(field, f"must be a multiple of 8, got {value}")
    _check_range(field, value, limits.min_size, limits.max_size)


def validate_request(request: GenerationRequest, limits: Limits) -> None:
    """Checks that need no style or model: fail fast with the field's name."""
    if not request.prompt:
        raise InvalidRequest("prompt", "must not be empty")
    if len(request.prompt) > limits.max_prompt_chars:
        raise InvalidRequest(
            "prompt", f"is {len(request.prompt)} characters; the limit is {limits.max_prompt_chars}"
        )
    if request.negative_prompt and len(request.negative_prompt) > limits.max_prompt_chars:
        raise InvalidRequest("negative_prompt", f"is longer than {limits.max_prompt_chars} characters")
    _check_range("batch_size", request.batch_size, 1, limits.max_batch)
    if request.seed is not None:
        _check_range("seed", request.seed, 0, SEED_MAX)
    if request.steps is not None:
        _check_range("steps", request.steps, 1, limits.max_steps)
    if request.cfg is not None:
        _check_range("cfg", request.cfg, 0, CFG_MAX)
    if request.clip_skip is not None:
        _check_range("clip_skip", request.clip_skip, 1, CLIP_SKIP_MAX)
    if request.width is not None:
        _check_size("width", request.width, limits)
    if request.height is not None:
        _check_size("height", request.height, limits)
    if request.sampler is not None:
        get_sampler(request.sampler)


def validate_plan(plan: Plan, limits: Limits) -> None:
    """Re-check a Plan against this deployment's limits: Plans also arrive from PNGs and other processes."""
    _check_size("width", plan.width, limits)
    _check_size("height", plan.height, limits)
    _check_range("steps", plan.steps, 1, limits.max_steps)
    _check_range("cfg", plan.cfg, 0, CFG_MAX)
    _check_range("batch_size", plan.batch_size, 1, limits.max_batch)
    for field, text in (("prompt", plan.prompt), ("negative_prompt", plan.negative_prompt)):
        if len(text) > limits.max_prompt_chars:
            raise InvalidRequest(field, f"is longer than {limits.max_prompt_chars} characters")
    from_plan(plan.sampler, plan.schedule)


def seeds_for(seed: int | None, batch_size: int) -> tuple[int, ...]:
    """Image i gets seed+i (wrapping at 2^32); no seed means a random one, reported in the Plan."""
    base = secrets.randbelow(SEED_MAX + 1) if seed is None else seed
    return tuple((base + i) % (SEED_MAX + 1) for i in range(batch_size))


class Resolver:
    """Builds Plans from requests against one registry and catalog."""

    def __init__(self, registry: StyleRegistry, catalog: ModelCatalog, limits: Limits) -> None:
        self.registry = registry
        self.catalog = catalog
        self.limits = limits

    def model_ref(self, entry: CatalogEntry) -> tuple[ModelRef, Family]:
        from brushwork.models.loading import family_of

        path = self.catalog.locate(entry)
        family = family_of(path, entry.family)
        sha = self.catalog.sha256(path)
        return ModelRef(name=entry.name, family=family, sha256=sha, short_hash=short_hash(sha),
                        demo=entry.demo), family

    def _adapters(self, recipe: Recipe, model: ModelRef, recipe_family: Family | None,
                  warnings: list[str]) -> tuple[tuple[AdapterRef, ...], AdapterRef | None]:
        if not recipe.loras and not recipe.vae:
            return (), None
        if model.demo:
            warnings.append("LoRAs/VAE of the style are not applied to the demo model (random weights)")
            return (), None
        if recipe_family is not None and recipe_family != model.family:
            warnings.append(
                f"style's LoRAs/VAE target {recipe_family} but model {model.name!r} is {model.family}; skipped"
            )
            return (), None
        loras = []
        unique = {lora.name: lora for lora in recipe.loras}  # a name twice: the later weight wins
        for lora in unique.values():
            path = self.catalog.adapter("lora", lora.name)
            if path is None:
                warnings.append(f"LoRA {lora.name!r} is not installed (put {lora.name}.safetensors "
                                f"in {self.catalog.models_dir / 'loras'}); generating without it")
                continue
            sha = self.catalog.sha256(path)
            short = lora_short_hash(self.catalog.hashes.file_sha256(path, addnet=True)) \
                if path.suffix.lower() == ".safetensors" else short_hash(sha)
            loras.append(AdapterRef(name=lora.name, sha256=sha, short_hash=short, weight=lora.weight))
        vae = None
        if recipe.vae:
            path = self.catalog.adapter("vae", recipe.vae)
            if path is None:
                warnings.append(f"VAE {recipe.vae!r} is not installed (put it in "
                                f"{self.catalog.models_dir / 'vae'}); using the checkpoint's own VAE")
            else:
                sha = self.catalog.sha256(path)
                vae = AdapterRef(name=recipe.vae, sha256=sha, short_hash=short_hash(sha))
        return tuple(loras), vae

    def resolve(self, request: GenerationRequest) -> Plan:
        validate_request(request, self.limits)
        spec, recipe = self.registry.recipe(request.prompt, request.style, request.type)
        warnings: list[str] = []
        model_name = request.model or recipe.model
        checkpoints = self.catalog.checkpoints()
        if model_name not in checkpoints:
            raise NotFound("model", model_name, checkpoints)
        model, family = self.model_ref(checkpoints[model_name])
        recipe_entry = checkpoints.get(recipe.model)
        recipe_family = recipe_entry.family if recipe_entry else None
        loras, vae = self._adapters(recipe, model, recipe_family, warnings)
        defaults = FAMILY_DEFAULTS[family]
        sampler = get_sampler(request.sampler or recipe.sampler or defaults.sampler)
        cfg = request.cfg if request.cfg is not None else (recipe.cfg if recipe.cfg is not None else defaults.cfg)
        try:
            plan = Plan(
                style=spec.name,
                style_type=request.type,
                model=model,
                prompt=recipe.prompt,
                negative_prompt=request.negative_prompt if request.negative_prompt is not None
                else recipe.negative_prompt,
                sampler=sampler.sampler,
                schedule=sampler.schedule,
                width=request.width or recipe.width or defaults.width,
                height=request.height or recipe.height or defaults.height,
                steps=request.steps or recipe.steps or defaults.steps,
                cfg=float(cfg),
                clip_skip=request.clip_skip or recipe.clip_skip,
                seeds=seeds_for(request.seed, request.batch_size),
                loras=loras,
                vae=vae,
                warnings=tuple(warnings),
            )
        except ValidationError as exc:  # only a style can get here: requests were checked above
            raise invalid_from_validation(exc) from None
        validate_plan(plan, self.limits)  # the style's values obey the same limits as the user's
        return plan
