"""Parameter groups: each generation concern declared once.

A request, a style's Recipe, the family defaults and the Plan all hold the
same group classes, so adding a mode means adding one group here (and one
runner), not editing six parallel field lists. Every field is optional:
`None` means "not decided at this layer". `merge` applies the one rule,
request > style > family default, field by field, and a Plan must leave
nothing undecided (`missing_fields`).

Field names are unique across groups, so callers may pass them flat
(`steps=20, mask_blur=8`); `fold_flat` files each under its group. Names
follow AUTOMATIC1111's API where it has one (mask_blur, inpaint_area,
hr_scale, hr_upscaler...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from brushwork.contract.assets import AssetRef

CFG_MAX = 30.0
CLIP_SKIP_MAX = 12
LORA_WEIGHT_MAX = 5.0  # |weight| of one LoRA; negative weights subtract its effect

ResizeMode = Literal["just_resize", "crop_and_resize", "resize_and_fill"]
MaskedContent = Literal["original", "fill", "latent_noise", "latent_nothing"]
InpaintArea = Literal["whole", "masked"]
Preprocessor = Literal["none", "canny"]

# Upscalers that need no model file (A1111 names).
LATENT_UPSCALER = "Latent"
LANCZOS = "Lanczos"


class Group(BaseModel):
    """A set of fields that travel together; all optional until merged into a Plan."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: fields whose value must be given by the request or the style (no default can stand in)
    required_input: ClassVar[tuple[str, ...]] = ()
    #: fields a complete Plan may still leave as None
    optional_in_plan: ClassVar[tuple[str, ...]] = ()

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in type(self).model_fields)


class Sampling(Group):
    """How the denoising loop runs."""

    sampler: str | None = Field(default=None, description="canonical A1111 name, e.g. 'DPM++ 2M Karras'")
    steps: int | None = Field(default=None, description="checked against limits.max_steps")
    cfg: float | None = Field(default=None, ge=0, le=CFG_MAX, description="guidance scale")
    clip_skip: int | None = Field(default=None, ge=1, le=CLIP_SKIP_MAX, description="A1111 'Clip skip'")


class Size(Group):
    """Output size in pixels (multiples of 8; checked against the deployment's limits)."""

    width: int | None = None
    height: int | None = None


class Init(Group):
    """img2img: start from an image instead of pure noise."""

    required_input = ("init_image",)

    init_image: AssetRef | None = None
    strength: float | None = Field(default=None, ge=0, le=1, description="A1111 'Denoising strength'")
    resize_mode: ResizeMode | None = Field(default=None, description="when the init image's size differs")


class Mask(Group):
    """Inpainting: which pixels may change (white) and how the masked area starts."""

    required_input = ("mask_image",)

    mask_image: AssetRef | None = None
    mask_blur: int | None = Field(default=None, ge=0, le=64)
    invert_mask: bool | None = None
    masked_content: MaskedContent | None = None
    inpaint_area: InpaintArea | None = Field(default=None, description="'masked' = A1111 'Only masked'")
    inpaint_padding: int | None = Field(default=None, ge=0, le=256, description="pixels around 'only masked'")


class Outpaint(Group):
    """Extend the canvas by this many pixels on each side, then inpaint the new area."""

    outpaint_left: int | None = Field(default=None, ge=0, le=2048)
    outpaint_right: int | None = Field(default=None, ge=0, le=2048)
    outpaint_up: int | None = Field(default=None, ge=0, le=2048)
    outpaint_down: int | None = Field(default=None, ge=0, le=2048)

    def sides(self) -> tuple[int, int, int, int]:
        return (self.outpaint_left or 0, self.outpaint_right or 0, self.outpaint_up or 0, self.outpaint_down or 0)


class Hires(Group):
    """A1111's hires fix: generate, upscale, then img2img at the bigger size."""

    required_input = ("hr_scale",)
    optional_in_plan = ("hr_upscaler_sha256",)

    hr_scale: float | None = Field(default=None, gt=1, le=4)
    hr_upscaler: str | None = Field(default=None, description="'Latent', 'Lanczos' or an upscaler model name")
    hr_steps: int | None = Field(default=None, ge=0, description="second-pass steps; 0 = same as steps")
    hr_denoise: float | None = Field(default=None, ge=0, le=1, description="second-pass denoising strength")
    hr_upscaler_sha256: str | None = Field(default=None, description="pinned by resolve for model upscalers")


class Refine(Group):
    """SDXL base → refiner hand-off in latent space (A1111's "Refiner" / "Refiner switch at").

    The base denoises the first `refiner_switch` of the schedule (diffusers
    `denoising_end`), the refiner model finishes it (`denoising_start`).
    """

    required_input = ("refiner",)

    refiner: str | None = Field(default=None, description="catalog name of an SDXL refiner checkpoint")
    refiner_switch: float | None = Field(default=None, gt=0, le=1,
                                         description="fraction of the steps the base runs; 1.0 = base alone")
    refiner_sha256: str | None = Field(default=None, description="pinned by resolve")


class LoraWeight(BaseModel):
    """A LoRA by catalog name with the weight it is applied at (A1111 `<lora:name:weight>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(min_length=1, max_length=128)
    weight: float = Field(default=1.0, ge=-LORA_WEIGHT_MAX, le=LORA_WEIGHT_MAX)


class ControlUnit(BaseModel):
    """One ControlNet: a model, a conditioning image and how strongly/when it steers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(min_length=1, description="name in models/controlnet/")
    image: AssetRef | None = Field(default=None, description="the map (or photo to preprocess); default: init image")
    preprocessor: Preprocessor = "none"
    low_threshold: int = Field(default=100, ge=0, le=255, description="canny")
    high_threshold: int = Field(default=200, ge=0, le=255, description="canny")
    scale: float = Field(default=1.0, ge=0, le=2, description="controlnet_conditioning_scale")
    start: float = Field(default=0.0, ge=0, le=1, description="fraction of steps where it starts")
    end: float = Field(default=1.0, ge=0, le=1, description="fraction of steps where it stops")
    sha256: str | None = Field(default=None, description="pinned by resolve")


class UpscaleStep(BaseModel):
    """One step of the post chain: an upscaler model (or Lanczos) by a factor."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    upscaler: str = Field(min_length=1)
    scale: float = Field(default=2.0, gt=0, description="the chain's product is checked against limits.max_upscale")
    sha256: str | None = Field(default=None, description="pinned by resolve for model upscalers")


class Post(Group):
    """What happens to finished images: upscaler chain, then an exact Lanczos resize."""

    optional_in_plan = ("upscale", "resize_to")

    upscale: tuple[UpscaleStep, ...] | None = None
    resize_to: tuple[int, int] | None = Field(default=None, description="final (width, height)")

    @field_validator("resize_to")
    @classmethod
    def _positive(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 1:
            raise ValueError("width and height must be at least 1")
        return value


# The merged groups of a request/Recipe/Plan, by attribute name.
GROUPS: dict[str, type[Group]] = {
    "sampling": Sampling,
    "size": Size,
    "init": Init,
    "mask": Mask,
    "outpaint": Outpaint,
    "hires": Hires,
    "refine": Refine,
    "post": Post,
}
FLAT_FIELDS: dict[str, str] = {
    field: group for group, cls in GROUPS.items() for field in cls.model_fields
}
assert len(FLAT_FIELDS) == sum(len(cls.model_fields) for cls in GROUPS.values()), "group field names must be unique"

G = TypeVar("G", bound=Group)


def fold_flat(data: Any) -> Any:
    """Move flat group fields (`steps=20`) under their group (`sampling={"steps": 20}`).

    Used as a `mode="before"` validator, so both spellings work everywhere and
    a name given both ways is an error rather than a silent choice.
    """
    if not isinstance(data, Mapping):
        return data
    out: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for key, value in data.items():
        group = FLAT_FIELDS.get(key)
        if group is None:
            out[key] = value
        elif value is not None:
            nested.setdefault(group, {})[key] = value
    for group, fields in nested.items():
        given = out.get(group)
        if given is None:
            out[group] = fields
            continue
        if isinstance(given, Group):
            given = given.model_dump(exclude_none=True)
        if not isinstance(given, Mapping):
            raise ValueError(f"{group} must be an object")
        clash = set(fields) & {k for k, v in given.items() if v is not None}
        if clash:
            raise ValueError(f"{', '.join(sorted(clash))} given twice (flat and inside {group!r})")
        out[group] = {**given, **fields}
    return out


def merge(cls: type[G], *layers: G | None) -> G:
    """The one merge rule: for each field, the first layer that decides it wins."""
    values: dict[str, Any] = {}
    for name in cls.model_fields:
        for layer in layers:
            value = getattr(layer, name) if layer is not None else None
            if value is not None:
                values[name] = value
                break
    return cls(**values)


def missing_fields(group: Group) -> list[str]:
    """Fields a Plan's group leaves undecided."""
    cls = type(group)
    return [name for name in cls.model_fields if getattr(group, name) is None and name not in cls.optional_in_plan]
