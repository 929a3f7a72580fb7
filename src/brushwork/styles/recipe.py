"""Recipe: what a style returns — the artistic decisions, not the execution.

A Recipe names things (catalog aliases for the model, LoRAs and VAE, an A1111
sampler name); `brushwork.resolve` turns it plus the user's overrides into a
fully specified `Plan`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LoraRef(BaseModel):
    """A LoRA by catalog name with the weight it is applied at."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    weight: float = Field(default=1.0, ge=-5.0, le=5.0)


class Recipe(BaseModel):
    """Everything a style decides for one prompt. Unset fields fall back to
    the model family's defaults at resolve time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="catalog alias of the base checkpoint")
    prompt: str = Field(description="the full positive prompt, enhancers included")
    negative_prompt: str = ""
    sampler: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    clip_skip: int = Field(default=1, ge=1, le=12)
    loras: tuple[LoraRef, ...] = ()
    vae: str | None = Field(default=None, description="catalog alias of a VAE to swap in")
