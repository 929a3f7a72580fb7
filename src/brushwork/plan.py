"""The contract between front doors and the engine.

* `GenerationRequest` — what a user asked, in their words (style, overrides).
* `Plan` — the fully resolved job: every field explicit, JSON-serialisable,
  no torch. It is what crosses process boundaries, what PNG metadata embeds
  and what replay reads back. Input images are `AssetRef`s, never bytes.
* `Result` — images plus the Plan that made them and timings.

Both the request and the Plan are built from the parameter groups in
`brushwork.contract.params`, each declared once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from brushwork.contract.assets import AssetRef
from brushwork.contract.families import Family, Variant
from brushwork.contract.params import (
    FLAT_FIELDS,
    GROUPS,
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
    UpscaleStep,
    fold_flat,
)
from brushwork.contract.samplers import from_a1111
from brushwork.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL.Image import Image

SEED_MAX = 2**32 - 1
PLAN_SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)
Mode = Literal["txt2img", "img2img", "inpaint", "outpaint"]
# How a Plan's prompt text is read: "plain" = as is (every Plan made before prompt weighting existed),
# "a1111" = AUTOMATIC1111's emphasis syntax: (word), (word:1.3), [word], \( and BREAK.
PromptSyntax = Literal["plain", "a1111"]
# Style and type names become part of output file names: keep them short and path-free.
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
_LIST_FIELDS: dict[str, tuple[str, type[BaseModel]]] = {
    "controls": ("control", ControlUnit),
    "upscale": ("upscale", UpscaleStep),
    "loras": ("lora", LoraWeight),
}
SafeName = Annotated[str, Field(pattern=NAME_PATTERN, description="letters, digits, '-' or '_'; at most 64")]

__all__ = [
    "AdapterRef", "AssetRef", "ControlUnit", "GenerationRequest", "Hires", "Init", "LoraWeight", "Mask", "Mode",
    "ModelRef", "Outpaint", "Plan", "Post", "PromptSyntax", "Refine", "Result", "SEED_MAX", "Sampling", "Size",
    "invalid_from_validation",
]


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """The first pydantic error as an `InvalidRequest` in the user's words.

    Group fields are named flat ("steps", not "sampling.steps"); list items
    by their option and number ("control: #1 scale: ..."); ranges say the
    whole allowed range, patterns what is allowed.
    """
    err = exc.errors()[0]
    loc = list(err["loc"])
    if len(loc) > 1 and loc[0] in GROUPS:
        loc = loc[1:]  # "sampling.steps" is "steps" to a user
    prefix, info = "", None
    if len(loc) >= 3 and loc[0] in _LIST_FIELDS and isinstance(loc[1], int):
        where, item_cls = _LIST_FIELDS[str(loc[0])]
        prefix = f"#{loc[1] + 1} {'.'.join(map(str, loc[2:]))}: "
        info = item_cls.model_fields.get(str(loc[2]))
    else:
        where = ".".join(map(str, loc)) or "request"
        if loc and str(loc[-1]) in FLAT_FIELDS:
            info = GROUPS[FLAT_FIELDS[str(loc[-1])]].model_fields[str(loc[-1])]
    return InvalidRequest(where, prefix + _describe(err, info))


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)


def _describe(err: Any, info: Any) -> str:
    kind, given = err["type"], err.get("input")
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than") and info is not None:
        bounds = {key: getattr(item, key) for item in info.metadata for key in ("ge", "gt", "le", "lt")
                  if getattr(item, key, None) is not None}
        low = f"at least {bounds['ge']:g}" if "ge" in bounds else f"greater than {bounds['gt']:g}" if "gt" in bounds else ""
        high = f"at most {bounds['le']:g}" if "le" in bounds else f"less than {bounds['lt']:g}" if "lt" in bounds else ""
        if "ge" in bounds and "le" in bounds:
            return f"must be between {bounds['ge']:g} and {bounds['le']:g}, got {_shown(given)}"
        return f"must be {' and '.join(p for p in (low, high) if p)}, got {_shown(given)}"
    if kind == "string_pattern_mismatch":
        if err.get("ctx", {}).get("pattern") == NAME_PATTERN:
            return f"must be 1-64 lowercase letters, digits, '-' or '_', got {_shown(given)}"
        return f"has the wrong format, got {_shown(given)}"
    if kind == "finite_number":
        return f"must be a finite number, got {_shown(given)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    return message[:1].lower() + message[1:]


class GenerationRequest(BaseModel):
    """A user's request. Unset fields are decided by the style and the model family.

    Group fields may be given flat (`steps=20`) or nested (`sampling={"steps": 20}`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False)

    prompt: str
    style: str = "auto"
    type: str | None = None
    model: str | None = Field(default=None, description="catalog name, or a path to a file or diffusers folder")
    negative_prompt: str | None = None
    seed: int | None = None
    batch_size: int = 1
    sampling: Sampling = Sampling()
    size: Size = Size()
    init: Init = Init()
    mask: Mask = Mask()
    outpaint: Outpaint = Outpaint()
    hires: Hires = Hires()
    refine: Refine = Refine()
    post: Post = Post()
    controls: tuple[ControlUnit, ...] | None = Field(default=None, description="replaces the style's when given")
    loras: tuple[LoraWeight, ...] | None = Field(
        default=None, description="added to the style's LoRAs (a name given by both: the request's weight wins)")

    _fold = model_validator(mode="before")(fold_flat)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build from untyped input (JSON, CLI), turning type errors into `InvalidRequest`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None
        except ValueError as exc:  # fold_flat: a field given twice
            raise InvalidRequest("request", str(exc)) from None


class ModelRef(BaseModel):
    """The checkpoint a Plan runs on: its catalog name plus content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: Family
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    short_hash: str = Field(description="A1111 'Model hash': first 10 hex of sha256")
    demo: bool = False
    variant: Variant = Field(default="base", description="'inpaint' for a dedicated 9-channel inpainting model")
    path: str | None = Field(default=None, description="set when the model was named by path, not catalog name")


class AdapterRef(BaseModel):
    """A LoRA or VAE resolved to a file and its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    short_hash: str
    weight: float = 1.0


class Plan(BaseModel):
    """A fully specified generation job. Same Plan + same weights + same inputs ⇒ same pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    schema_version: Literal[2] = PLAN_SCHEMA_VERSION
    mode: Mode = "txt2img"
    style: SafeName
    style_type: SafeName | None = None
    model: ModelRef
    prompt: str
    negative_prompt: str
    seeds: tuple[Annotated[int, Field(ge=0, le=SEED_MAX)], ...] = Field(
        min_length=1, description="one seed per image; image i uses seeds[i]"
    )
    sampling: Sampling
    size: Size
    init: Init | None = None
    mask: Mask | None = None
    outpaint: Outpaint | None = None
    controls: tuple[ControlUnit, ...] = ()
    hires: Hires | None = None
    refine: Refine | None = None
    post: Post | None = None
    loras: tuple[AdapterRef, ...] = ()
    vae: AdapterRef | None = None
    embeddings: tuple[AdapterRef, ...] = Field(
        default=(), description="textual-inversion embeddings the prompts name, pinned to their files")
    prompt_syntax: PromptSyntax = Field(
        default="plain", description="how the prompt text is read; absent in Plans older than weighting")
    warnings: tuple[str, ...] = Field(default=(), description="what resolution had to change or drop")

    # -- typed views of the always-present fields (a validated Plan has them all) --

    @property
    def batch_size(self) -> int:
        return len(self.seeds)

    @property
    def width(self) -> int:
        return _decided(self.size.width)

    @property
    def height(self) -> int:
        return _decided(self.size.height)

    @property
    def steps(self) -> int:
        return _decided(self.sampling.steps)

    @property
    def cfg(self) -> float:
        return _decided(self.sampling.cfg)

    @property
    def sampler(self) -> str:
        return _decided(self.sampling.sampler)

    @property
    def clip_skip(self) -> int:
        return _decided(self.sampling.clip_skip)

    def assets(self) -> list[AssetRef]:
        """Every input image the Plan needs, in a stable order."""
        refs = [self.init.init_image if self.init else None, self.mask.mask_image if self.mask else None]
        refs += [unit.image for unit in self.controls]
        return [ref for ref in refs if ref is not None]

    # -- serialisation ------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Parse a Plan from outside (a PNG, another process) strictly: no coercion, known versions only."""
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("plan", "is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidRequest("plan", "must be a JSON object")
        version = data.get("schema_version", 1)
        if type(version) is not int or version not in READABLE_SCHEMA_VERSIONS:
            raise InvalidRequest(
                "schema_version",
                f"unknown Plan schema version {version!r}; this brushwork reads versions "
                f"{', '.join(map(str, READABLE_SCHEMA_VERSIONS))} (a newer brushwork made it?)",
            )
        if version == 1:
            data = _upgrade_v1(data)
        try:
            return cls.model_validate_json(json.dumps(data), strict=True)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None

    def cache_key(self) -> str:
        """Content address of the job: identical Plans give identical images."""
        payload = self.model_dump(mode="json", exclude={"warnings"}, exclude_none=True)
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def batch_key(self) -> str:
        """Which Plans can run as one batch: equal keys differ only in prompts, seeds and style name.

        Each image keeps its own seed's generator, so a batched job gets the
        pixels it would get alone. Empty for modes that are not batched
        (inpaint, outpaint: their per-image masks and crops are run one job at a time).
        """
        if self.mode not in BATCHED_MODES:
            return ""
        payload = self.model_dump(mode="json", exclude=_PER_JOB, exclude_none=True)
        payload["has_negative_prompt"] = bool(self.negative_prompt)  # SDXL zeroes an empty negative prompt
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def single(self, index: int) -> Plan:
        """The Plan for image `index` alone (what `replay` of that image runs)."""
        return self.model_copy(update={"seeds": (self.seeds[index],)})


BATCHED_MODES = ("txt2img", "img2img")
_PER_JOB = {"prompt", "negative_prompt", "seeds", "style", "style_type", "warnings"}


def _decided(value: Any) -> Any:
    if value is None:
        raise InvalidRequest("plan", "is incomplete; validate it with brushwork.contract.validation first")
    return value


_V1_MOVED = ("sampler", "schedule", "steps", "cfg", "clip_skip", "width", "height")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 Plan (brushwork 0.1 PNGs) in version-2 shape: same image, new layout."""
    out = {k: v for k, v in data.items() if k not in _V1_MOVED}
    sampler, schedule = data.get("sampler"), data.get("schedule", "Automatic")
    if not isinstance(sampler, str) or not isinstance(schedule, str):
        raise InvalidRequest("sampler", "a version-1 Plan must name its sampler and schedule as text")
    out["schema_version"] = 2
    out["sampling"] = {"sampler": from_a1111(sampler, schedule), "steps": data.get("steps"),
                       "cfg": data.get("cfg"), "clip_skip": data.get("clip_skip", 1)}
    out["size"] = {"width": data.get("width"), "height": data.get("height")}
    return out


@dataclass
class Result:
    """What a generation returns: images in seed order, the Plan, timings in seconds.

    `filtered[i]` is True when the safety filter replaced image i.
    """

    images: list[Image]
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)
    filtered: list[bool] = field(default_factory=list)
    peak_memory: int | None = None  # bytes allocated on the device at most during the run (CUDA only)
    notes: list[str] = field(default_factory=list)  # what the engine had to do differently (e.g. an fp32 VAE retry)
    runtime: dict[str, Any] = field(default_factory=dict)  # how it ran here: device, dtype, threads
