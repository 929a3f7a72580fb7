"""`Resolver`: GenerationRequest + style + catalog → Plan.

This is where every default is decided, once: after it, the Plan says
everything and the engine makes no choices of its own. Each parameter group
is merged by the one rule in `brushwork.contract.params.merge`: request >
style > family default. Pure Python: no torch (the demo model is built on
first use, in a function).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from brushwork.config import Limits
from brushwork.contract.assets import AssetRef
from brushwork.contract.families import Family
from brushwork.contract.params import (
    LANCZOS,
    LATENT_UPSCALER,
    ControlUnit,
    Hires,
    Init,
    LoraWeight,
    Mask,
    Outpaint,
    Post,
    Refine,
    Sampling,
    Size,
    merge,
)
from brushwork.contract.prompt_syntax import check_prompt_syntax
from brushwork.contract.samplers import canonical_sampler
from brushwork.contract.validation import validate_plan
from brushwork.errors import InvalidRequest, ModelUnavailable, NotFound
from brushwork.models.catalog import CatalogEntry, Kind, ModelCatalog
from brushwork.models.hashing import WEIGHT_SUFFIXES, lora_short_hash, short_hash
from brushwork.plan import (
    AdapterRef,
    GenerationRequest,
    Mode,
    ModelRef,
    Plan,
    invalid_from_validation,
)
from brushwork.resolve.defaults import FAMILY_DEFAULTS, FamilyDefaults
from brushwork.resolve.family_fit import fit_plan, fit_sampling
from brushwork.resolve.loras import extract_lora_tags, lora_family, refuse_tags
from brushwork.resolve.request import mode_of, seeds_for, validate_request
from brushwork.styles.recipe import Recipe
from brushwork.styles.registry import StyleRegistry


class AssetIndex(Protocol):
    """What resolve needs of the asset store: does it hold an input image, and its mask pixels."""

    def has(self, ref: AssetRef) -> bool: ...

    def open_mask(self, ref: AssetRef) -> Any: ...


KIND_NAMES: dict[Kind, str] = {"controlnet": "ControlNet", "upscaler": "upscaler"}


def _family_label(family: str) -> str:
    from brushwork.models.offline_configs import FAMILY_LABELS

    return FAMILY_LABELS.get(family, family)  # type: ignore[call-overload]


def _with_article(family: str) -> str:
    label = _family_label(family)
    return f"{'an' if label.startswith('S') else 'a'} {label}"  # an SD 1.5, an SDXL, a FLUX.1


def _round8(value: int) -> int:
    return max(8, value // 8 * 8)


class Resolver:
    """Builds Plans from requests against one registry, catalog and asset store."""

    def __init__(self, registry: StyleRegistry, catalog: ModelCatalog, limits: Limits,
                 assets: AssetIndex | None = None) -> None:
        self.registry = registry
        self.catalog = catalog
        self.limits = limits
        self.assets = assets

    # -- model and files ---------------------------------------------------------------

    def model_entry(self, name: str) -> CatalogEntry:
        """A catalog name, or a path to a `.safetensors` file or diffusers folder."""
        checkpoints = self.catalog.checkpoints()
        if name in checkpoints:
            return checkpoints[name]
        path = Path(name).expanduser()
        if "/" in name or "\\" in name or path.suffix.lower() in WEIGHT_SUFFIXES or path.exists():
            return self.catalog.entry_for_path(path)
        raise NotFound("model", name, checkpoints)

    def model_ref(self, entry: CatalogEntry, by_path: bool = False) -> ModelRef:
        from brushwork.models.loading import check_shapes, family_and_variant

        path = self.catalog.locate(entry)
        try:
            family, variant = family_and_variant(path, entry.family)
            check_shapes(path, entry.config)  # a fine-tune with other sizes is refused now, not deep in diffusers
        except ModelUnavailable as exc:
            if by_path:  # a file the user named on the spot is their input: a usage error, exit 2
                raise InvalidRequest("model", str(exc)) from None
            raise
        sha = self.catalog.sha256(path)
        return ModelRef(name=entry.name, family=family, sha256=sha, short_hash=short_hash(sha),
                        demo=entry.demo, variant=variant, path=str(path) if by_path else None)

    def _installed(self, field: str, kind: Kind, name: str, extra_valid: tuple[str, ...] = ()) -> tuple[Path, str]:
        """An installed ControlNet/upscaler file and its sha256, or NotFound (for `field`) listing what is installed."""
        path = self.catalog.adapter(kind, name)
        if path is None:
            raise NotFound(field, name, [*self.catalog.scan(kind), *extra_valid], what=KIND_NAMES[kind])
        return path, self.catalog.sha256(path)

    def _pinned(self, field: str, kind: Kind, name: str, extra_valid: tuple[str, ...] = ()) -> str:
        return self._installed(field, kind, name, extra_valid)[1]

    def _lora_ref(self, lora: LoraWeight, path: Path) -> AdapterRef:
        sha = self.catalog.sha256(path)
        short = lora_short_hash(self.catalog.hashes.file_sha256(path, addnet=True)) \
            if path.suffix.lower() == ".safetensors" else short_hash(sha)
        return AdapterRef(name=lora.name, sha256=sha, short_hash=short, weight=lora.weight)

    def _style_loras(self, recipe: Recipe, model: ModelRef, warnings: list[str]) -> list[AdapterRef]:
        """A style's LoRAs: one that is missing or made for another family is a warning, not an error."""
        loras = []
        for lora in recipe.loras:
            path = self.catalog.adapter("lora", lora.name)
            if path is None:
                warnings.append(f"LoRA {lora.name!r} is not installed (put {lora.name}.safetensors "
                                f"in {self.catalog.models_dir / 'loras'}); generating without it")
                continue
            family = lora_family(path)
            if family is not None and family != model.family:
                warnings.append(f"the style's LoRA {lora.name!r} is for {_family_label(family)}, model "
                                f"{model.name!r} is {_family_label(model.family)}; generating without it")
                continue
            loras.append(self._lora_ref(lora, path))
        return loras

    def _requested_loras(self, requested: list[LoraWeight], model: ModelRef) -> list[AdapterRef]:
        """LoRAs the user named (`--lora`, `loras`, `<lora:>` tags): each must exist and fit the model."""
        loras = []
        for lora in requested:
            path = self.catalog.adapter("lora", lora.name)
            if path is None:
                raise NotFound("lora", lora.name, self.catalog.scan("lora"), what="LoRA")
            family = lora_family(path)
            if family is not None and family != model.family:
                raise InvalidRequest("lora", f"{lora.name!r} is a LoRA for {_family_label(family)}; model "
                                             f"{model.name!r} is {_family_label(model.family)}")
            loras.append(self._lora_ref(lora, path))
        return loras

    def _adapters(self, recipe: Recipe, model: ModelRef, recipe_family: Family | None,
                  warnings: list[str], requested: list[LoraWeight]) -> tuple[tuple[AdapterRef, ...], AdapterRef | None]:
        """The style's LoRAs and VAE (skipped on the demo model and on another family), then the user's LoRAs.
        A name given twice keeps its first place and the later weight."""
        style_loras: list[AdapterRef] = []
        if (recipe.loras or recipe.vae) and model.demo:
            warnings.append("LoRAs/VAE of the style are not applied to the demo model (random weights)")
        elif (recipe.loras or recipe.vae) and recipe_family is not None and recipe_family != model.family:
            warnings.append(
                f"style's LoRAs/VAE target {recipe_family} but model {model.name!r} is {model.family}; skipped"
            )
        else:
            style_loras = self._style_loras(recipe, model, warnings)
        unique = {ref.name: ref for ref in [*style_loras, *self._requested_loras(requested, model)]}
        loras = list(unique.values())
        if not recipe.vae or model.demo or (recipe_family is not None and recipe_family != model.family):
            return tuple(loras), None
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

    # -- groups --------------------------------------------------------------------------

    def _check_asset(self, field: str, ref: AssetRef | None) -> None:
        if ref is not None and self.assets is not None and not self.assets.has(ref):
            raise InvalidRequest(field, f"image {ref.short}… is not in the asset store; add it first")

    def _image_groups(self, mode: Mode, request: GenerationRequest, recipe: Recipe, defaults: FamilyDefaults,
                      ) -> tuple[Init | None, Mask | None, Outpaint | None]:
        if mode == "txt2img":
            return None, None, None
        init = merge(Init, request.init, recipe.init, defaults.outpaint_init if mode == "outpaint" else defaults.init)
        self._check_asset("init_image", init.init_image)
        mask = merge(Mask, request.mask, recipe.mask, defaults.mask) if mode == "inpaint" else None
        if mask is not None:
            self._check_asset("mask_image", mask.mask_image)
            image, mask_ref = init.init_image, mask.mask_image
            assert image is not None and mask_ref is not None
            if (mask_ref.width, mask_ref.height) != (image.width, image.height):
                raise InvalidRequest("mask_image", f"the mask is {mask_ref.width}x{mask_ref.height} but the init "
                                                   f"image is {image.width}x{image.height}; they must be the same size")
            self._check_mask_paints_something(mask)
        outpaint = merge(Outpaint, request.outpaint, defaults.outpaint) if mode == "outpaint" else None
        return init, mask, outpaint

    def _check_mask_paints_something(self, mask: Mask) -> None:
        if self.assets is None or mask.mask_image is None:
            return
        from PIL import ImageOps

        image = self.assets.open_mask(mask.mask_image)
        if mask.invert_mask:
            image = ImageOps.invert(image)
        if image.getbbox() is None:
            raise InvalidRequest("mask_image", "marks nothing to repaint (white marks what to repaint"
                                               + ("; --invert-mask swaps it" if not mask.invert_mask else
                                                  ", and --invert-mask turned it all black") + ")")

    def _size(self, mode: Mode, request: GenerationRequest, recipe: Recipe, defaults: FamilyDefaults,
              init: Init | None, outpaint: Outpaint | None) -> tuple[Size, Outpaint | None]:
        """Request > (the init image's own size) > style > family default; outpainting sets the canvas."""
        if outpaint is not None and init is not None and init.init_image is not None:
            left, right, up, down = outpaint.sides()
            width, height = init.init_image.width + left + right, init.init_image.height + up + down
            # Round the canvas up to a multiple of 8 by extending right/down a little further.
            right += -width % 8
            down += -height % 8
            outpaint = outpaint.model_copy(update={"outpaint_right": right, "outpaint_down": down})
            if max(width, height) > self.limits.max_size:
                raise InvalidRequest("outpaint", f"the canvas would be {width}x{height}, larger than the size "
                                                 f"limit {self.limits.max_size}")
            return Size(width=width + (-width % 8), height=height + (-height % 8)), outpaint
        from_image = None
        if init is not None and init.init_image is not None and None in (request.size.width, request.size.height):
            from_image = self._image_size(init.init_image)
        return merge(Size, request.size, from_image, recipe.size, defaults.size), outpaint

    def _image_size(self, ref: AssetRef) -> Size:
        """The init image's size, scaled down proportionally to fit the limits, in multiples of 8."""
        scale = min(1.0, self.limits.max_size / max(ref.width, ref.height))
        width, height = _round8(int(ref.width * scale)), _round8(int(ref.height * scale))
        if min(width, height) < self.limits.min_size:
            raise InvalidRequest("init_image", f"is {ref.width}x{ref.height}: generating at its shape would be "
                                               f"{width}x{height}, below the smallest side {self.limits.min_size}; "
                                               "give the size to generate at (--size)")
        return Size(width=width, height=height)

    def _controls(self, request: GenerationRequest, recipe: Recipe, init: Init | None,
                  family: Family) -> tuple[ControlUnit, ...]:
        units = request.controls if request.controls is not None else recipe.controls
        pinned = []
        for unit in units:
            image = unit.image or (init.init_image if init else None)
            if image is None:
                raise InvalidRequest("control", f"ControlNet {unit.model!r} needs an image (or an init image)")
            self._check_asset("control", image)
            path, sha = self._installed("control", "controlnet", unit.model)
            self._check_control_family(path, unit.model, family)
            pinned.append(unit.model_copy(update={"image": image, "sha256": sha}))
        return tuple(pinned)

    def _check_control_family(self, path: Path, name: str, family: Family) -> None:
        from brushwork.models.controlnet import check_compatible, controlnet_family

        check_compatible(controlnet_family(path), family, name)

    def _hires(self, mode: Mode, request: GenerationRequest, recipe: Recipe, defaults: FamilyDefaults,
               warnings: list[str]) -> Hires | None:
        if request.hires.is_empty() and recipe.hires.hr_scale is None:
            return None
        if mode != "txt2img":
            if not request.hires.is_empty():
                raise InvalidRequest("hr_scale", f"hires fix applies to txt2img only, not {mode}")
            warnings.append(f"the style's hires fix applies to txt2img only; skipped in {mode}")
            return None
        hires = merge(Hires, request.hires, recipe.hires, defaults.hires)
        name = hires.hr_upscaler or LATENT_UPSCALER
        for builtin in (LATENT_UPSCALER, LANCZOS):
            if name.lower() == builtin.lower():
                return hires.model_copy(update={"hr_upscaler": builtin})
        sha = self._pinned("hr_upscaler", "upscaler", name, (LATENT_UPSCALER, LANCZOS))
        return hires.model_copy(update={"hr_upscaler_sha256": sha})

    def _refine(self, mode: Mode, request: GenerationRequest, recipe: Recipe, defaults: FamilyDefaults,
                model: ModelRef, warnings: list[str]) -> Refine | None:
        """The SDXL refiner hand-off (request > style > default), pinned to an installed refiner; or None.

        Also refuses a refiner as the main model where it cannot start from noise:
        it only finishes partly denoised images (img2img).
        """
        from brushwork.models.loading import check_shapes, family_and_variant

        if model.variant == "refiner" and mode != "img2img":
            raise InvalidRequest("model", f"{model.name!r} is an SDXL refiner: it only finishes images (img2img with "
                                          "an init image); use it as --refiner with an SDXL base model instead")
        if request.refine.is_empty() and recipe.refine.refiner is None:
            return None
        from_request = not request.refine.is_empty()
        where = "" if from_request else "the style's "
        problem = None
        if mode != "txt2img":
            problem = f"{where}refiner applies to txt2img only, not {mode}"
        elif model.family != "sdxl" or model.variant != "base":
            problem = (f"{where}refiner hands over from an SDXL base model; {model.name!r} is "
                       f"{'an SDXL ' + model.variant if model.family == 'sdxl' else _with_article(model.family)} "
                       "model")
        if problem is not None:
            if from_request:
                raise InvalidRequest("refiner", problem)
            warnings.append(f"{problem}; skipped")
            return None
        refine = merge(Refine, request.refine, recipe.refine, defaults.refine)
        name = refine.refiner
        if request.refine.refiner is None and request.refine.refiner_switch is not None and name is None:
            raise InvalidRequest("refiner", "refiner_switch needs a refiner (--refiner NAME)")
        checkpoints = self.catalog.checkpoints()

        def variant_of(entry: CatalogEntry) -> str | None:
            if entry.demo or entry.family not in (None, "sdxl") or not self.catalog.is_installed(entry):
                return None
            try:
                return family_and_variant(self.catalog.locate(entry), entry.family)[1]
            except (ModelUnavailable, InvalidRequest):
                return None

        def refiners() -> list[str]:
            return [n for n, e in checkpoints.items() if variant_of(e) == "refiner"]

        if name not in checkpoints:
            raise NotFound("refiner", str(name), refiners(), what="SDXL refiner")
        entry = checkpoints[name]
        path = self.catalog.locate(entry)
        if family_and_variant(path, entry.family)[1] != "refiner":
            installed = ", ".join(sorted(refiners())) or "(none installed)"
            raise InvalidRequest("refiner", f"{name!r} is not an SDXL refiner; refiners: {installed}")
        check_shapes(path, entry.config)
        return refine.model_copy(update={"refiner_sha256": self.catalog.sha256(path)})

    def _post(self, request: GenerationRequest, recipe: Recipe, defaults: FamilyDefaults) -> Post | None:
        post = merge(Post, request.post, recipe.post, defaults.post)
        if post.is_empty():
            return None
        steps = []
        for step in post.upscale or ():
            if step.upscaler.lower() == LANCZOS.lower():
                steps.append(step.model_copy(update={"upscaler": LANCZOS, "sha256": None}))
            else:
                steps.append(step.model_copy(update={"sha256": self._pinned("upscale", "upscaler", step.upscaler, (LANCZOS,))}))
        return post.model_copy(update={"upscale": tuple(steps)})

    def _check_clip_skip(self, clip_skip: int, model: ModelRef, entry: CatalogEntry) -> None:
        if clip_skip == 1:
            return
        from brushwork.models.inspect import text_encoder_layers

        layers = text_encoder_layers(self.catalog.locate(entry), model.family)
        if clip_skip >= layers:
            raise InvalidRequest("clip_skip", f"must be between 1 and {layers - 1} for model {model.name!r} "
                                              f"(its text encoder has {layers} layers), got {clip_skip}")

    def _embeddings(self, prompt: str, negative_prompt: str, request: GenerationRequest, model: ModelRef,
                    warnings: list[str]) -> tuple[AdapterRef, ...]:
        """Textual-inversion embeddings the prompts use by name (A1111's way), pinned to their files.

        One made for another family is an error when the user typed its name, and a warning
        (the name stays plain words, as in A1111) when it came from a style's template.
        """
        installed = list(self.catalog.scan("embedding"))
        if not installed:
            return ()
        from brushwork.contract.prompt_syntax import embedding_names
        from brushwork.models.embedding_files import (
            family_problem,
            read_embedding_shape,
        )

        used = embedding_names(prompt, installed)
        used += [name for name in embedding_names(negative_prompt, installed) if name not in used]
        typed = set(embedding_names(request.prompt, used)) | set(embedding_names(request.negative_prompt or "", used))
        refs = []
        for name in used:
            path = self.catalog.adapter("embedding", name)  # refuses a pickle unless allowed
            assert path is not None
            try:
                problem = family_problem(read_embedding_shape(path).widths, model.family)
            except ValueError as exc:
                raise ModelUnavailable(f"embedding {name!r} ({path.name}): {exc}") from None
            if problem:
                if name in typed:
                    raise InvalidRequest("prompt", f"embedding {name!r} ({path.name}) cannot serve model "
                                                   f"{model.name!r}: {problem}")
                warnings.append(f"embedding {name!r} of the style is not used: {problem}")
                continue
            sha = self.catalog.sha256(path)
            refs.append(AdapterRef(name=name, sha256=sha, short_hash=short_hash(sha)))
        return tuple(refs)

    # -- the whole request ------------------------------------------------------------------

    def resolve(self, request: GenerationRequest) -> Plan:
        validate_request(request, self.limits)
        check_prompt_syntax("prompt", request.prompt)
        if request.negative_prompt:
            check_prompt_syntax("negative_prompt", request.negative_prompt)
        spec, recipe = self.registry.recipe(request.prompt, request.style, request.type)
        warnings: list[str] = []
        checkpoints = self.catalog.checkpoints()
        model_name = request.model or recipe.model
        entry = self.model_entry(model_name)
        model = self.model_ref(entry, by_path=model_name not in checkpoints)
        recipe_entry = checkpoints.get(recipe.model)
        prompt, tagged = extract_lora_tags(recipe.prompt)
        negative_prompt = request.negative_prompt if request.negative_prompt is not None else recipe.negative_prompt
        refuse_tags("negative_prompt", negative_prompt)
        loras, vae = self._adapters(recipe, model, recipe_entry.family if recipe_entry else None, warnings,
                                    [*(request.loras or ()), *tagged])
        defaults = FAMILY_DEFAULTS[model.family]
        mode = mode_of(request)
        sampling = merge(Sampling, request.sampling, recipe.sampling, defaults.sampling)
        sampling = sampling.model_copy(update={"sampler": canonical_sampler(sampling.sampler or "")})
        sampling = fit_sampling(model.family, request.sampling, sampling, defaults.sampling,
                                recipe_entry.family if recipe_entry else None, warnings)
        self._check_clip_skip(sampling.clip_skip or 1, model, entry)
        init, mask, outpaint = self._image_groups(mode, request, recipe, defaults)
        size, outpaint = self._size(mode, request, recipe, defaults, init, outpaint)
        try:
            plan = Plan(
                mode=mode,
                style=spec.name,
                style_type=request.type,
                model=model,
                prompt=prompt,
                negative_prompt=negative_prompt,
                seeds=seeds_for(request.seed, request.batch_size),
                sampling=sampling,
                size=size,
                init=init,
                mask=mask,
                outpaint=outpaint,
                controls=self._controls(request, recipe, init, model.family),
                hires=self._hires(mode, request, recipe, defaults, warnings),
                refine=self._refine(mode, request, recipe, defaults, model, warnings),
                post=self._post(request, recipe, defaults),
                loras=loras,
                vae=vae,
                embeddings=self._embeddings(prompt, negative_prompt, request, model, warnings),
                prompt_syntax="a1111",
                warnings=tuple(warnings),
            )
        except ValidationError as exc:  # only a style can get here: requests were checked above
            raise invalid_from_validation(exc) from None
        plan = fit_plan(plan, request)  # what the style gives that the family cannot use (FLUX.1)
        validate_plan(plan, self.limits)  # the style's values obey the same limits as the user's
        return plan

