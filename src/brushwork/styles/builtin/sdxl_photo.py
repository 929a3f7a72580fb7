"""SDXL photography at native resolution.

SDXL base renders 1024x1024 natively and needs far less prompt scaffolding
than SD1.5: a few photographic terms after the prompt and a short negative
prompt are enough (long SD1.5-style negatives mostly hurt SDXL). DPM++ 2M
Karras at 30 steps and cfg 6 are the common SDXL defaults; higher cfg
over-saturates. Needs much more memory than the SD1.5 styles; the memory
planner decides the offload strategy. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = "blurry, low quality, distorted, deformed, cartoon, text, watermark"


@style(
    name="sdxl_photo",
    keywords=("sdxl",),
    description="SDXL base photography at 1024x1024: natural light, fine detail.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="sdxl",
        prompt=(
            f"{prompt}, professional photograph, natural lighting, sharp focus, highly detailed"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=1024,
        height=1024,
        steps=30,
        cfg=6.0,
    )
