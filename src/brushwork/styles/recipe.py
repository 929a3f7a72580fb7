"""Recipe: what a style returns — the artistic decisions, not the execution.

A Recipe names things (catalog aliases for the model, LoRAs and VAE, an A1111
sampler name) and may decide any parameter group a request can: sampling,
size, img2img strength and resize mode, inpainting options, ControlNets,
hires fix and the upscaler chain. `brushwork.resolve` merges it with the
user's request (request > style > family default) into a `Plan`.

Group fields can be given flat: `Recipe(..., steps=28, hr_scale=2.0)`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

from brushwork.contract.params import (
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
    fold_flat,
)

LoraRef = LoraWeight  # the name styles have always used


class Recipe(BaseModel):
    """Everything a style decides for one prompt. Unset fields fall back to
    the model family's defaults at resolve time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str = Field(description="catalog alias of the base checkpoint")
    prompt: str = Field(description="the full positive prompt, enhancers included")
    negative_prompt: str = ""
    sampling: Sampling = Sampling()
    size: Size = Size()
    init: Init = Init()
    mask: Mask = Mask()
    outpaint: Outpaint = Outpaint()
    hires: Hires = Hires()
    refine: Refine = Refine()
    post: Post = Post()
    controls: tuple[ControlUnit, ...] = Field(
        default=(), description="ControlNets; a unit without an image uses the request's init image"
    )
    loras: tuple[LoraRef, ...] = ()
    vae: str | None = Field(default=None, description="catalog alias of a VAE to swap in")

    _fold = model_validator(mode="before")(fold_flat)
