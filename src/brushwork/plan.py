"""The contract between front doors and the engine.

* `GenerationRequest` — what a user asked, in their words (style, overrides).
* `Plan` — the fully resolved job: every field explicit, JSON-serialisable,
  no torch. It is what crosses process boundaries, what PNG metadata embeds
  and what replay reads back.
* `Result` — images plus the Plan that made them and timings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brushwork.errors import InvalidRequest

if TYPE_CHECKING:
    from PIL.Image import Image

SEED_MAX = 2**32 - 1
PLAN_SCHEMA_VERSION = 1
Mode = Literal["txt2img"]


class GenerationRequest(BaseModel):
    """A user's request. Unset fields are decided by the style and the model family."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    prompt: str
    style: str = "auto"
    type: str | None = None
    model: str | None = None
    negative_prompt: str | None = None
    sampler: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    seed: int | None = None
    batch_size: int = 1
    clip_skip: int | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> GenerationRequest:
        """Build from untyped input (JSON, CLI), turning type errors into `InvalidRequest`."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None


def invalid_from_validation(exc: ValidationError) -> InvalidRequest:
    """The first pydantic error as an `InvalidRequest` naming its field."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "request"
    return InvalidRequest(where, err["msg"].lower())


class ModelRef(BaseModel):
    """The checkpoint a Plan runs on: its catalog name plus content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    family: Literal["sd15", "sdxl"]
    sha256: str
    short_hash: str = Field(description="A1111 'Model hash': first 10 hex of sha256")
    demo: bool = False


class AdapterRef(BaseModel):
    """A LoRA or VAE resolved to a file and its hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sha256: str
    short_hash: str
    weight: float = 1.0


class Plan(BaseModel):
    """A fully specified generation job. Same Plan + same weights ⇒ same pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PLAN_SCHEMA_VERSION
    mode: Mode = "txt2img"
    style: str
    style_type: str | None = None
    model: ModelRef
    prompt: str
    negative_prompt: str
    sampler: str = Field(description="A1111 sampler name without schedule, e.g. 'DPM++ 2M'")
    schedule: str = Field(description="A1111 'Schedule type': Automatic, Karras, ...")
    width: int = Field(ge=8, multiple_of=8)
    height: int = Field(ge=8, multiple_of=8)
    steps: int = Field(ge=1)
    cfg: float = Field(ge=0)
    clip_skip: int = Field(default=1, ge=1, le=12)
    seeds: tuple[Annotated[int, Field(ge=0, le=SEED_MAX)], ...] = Field(
        min_length=1, description="one seed per image; image i uses seeds[i]"
    )
    loras: tuple[AdapterRef, ...] = ()
    vae: AdapterRef | None = None
    warnings: tuple[str, ...] = Field(default=(), description="what resolution had to change or drop")

    @property
    def batch_size(self) -> int:
        return len(self.seeds)

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str) -> Plan:
        try:
            return cls.model_validate_json(text)
        except ValidationError as exc:
            raise invalid_from_validation(exc) from None

    def cache_key(self) -> str:
        """Content address of the job: identical Plans give identical images."""
        payload = self.model_dump(mode="json", exclude={"warnings"})
        blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def single(self, index: int) -> Plan:
        """The Plan for image `index` alone (what `replay` of that image runs)."""
        return self.model_copy(update={"seeds": (self.seeds[index],)})


@dataclass
class Result:
    """What a generation returns: images in seed order, the Plan, timings in seconds."""

    images: list[Image]
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)
