"""The neutral default style.

Used when no style is named and no keyword matches. It aims to stay out of the
way: the user's prompt is kept almost untouched, with only a couple of light
quality words after it and a generic negative prompt that removes the most
common SD1.5 defects (blur, artifacts, watermarks). Plain SD 1.5 at 512x512
(its native size) with DPM++ 2M Karras at 25 steps / cfg 7 is the
conventional, predictable baseline. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "lowres, blurry, worst quality, low quality, jpeg artifacts, "
    "watermark, signature, text, deformed"
)


@style(
    name="general",
    keywords=(),
    description="Neutral default: your prompt with light quality enhancers on SD 1.5.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="sd15",
        prompt=f"{prompt}, high quality, detailed",
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=512,
        height=512,
        steps=25,
        cfg=7.0,
    )
