"""Cinematic film stills on Juggernaut XL.

Juggernaut XL is an SDXL fine-tune with a strong cinematic/photographic bias.
Enhancers ask for a film-still look (anamorphic framing, dramatic lighting,
colour grading); the negative prompt stays short as SDXL prefers. 1216x832 is
an SDXL training bucket close to 1 megapixel with a widescreen aspect ratio.
DPM++ 2M Karras at 30 steps, cfg 5.5 (Juggernaut's recommended 4.5–6 range).
Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = "blurry, low quality, cartoon, anime, illustration, text, watermark, deformed"


@style(
    name="cinematic",
    keywords=("cinematic", "film still", "movie still"),
    description="Widescreen cinematic film still (Juggernaut XL): dramatic light, colour grading.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="juggernaut-xl",
        prompt=(
            f"cinematic film still, {prompt}, anamorphic lens, dramatic lighting, "
            "color graded, shallow depth of field, highly detailed"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=1216,
        height=832,
        steps=30,
        cfg=5.5,
    )
