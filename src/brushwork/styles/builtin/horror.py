"""Dark horror art: dread, deep shadow and desaturated colour.

DreamShaper gives a cinematic, slightly painted horror look. Enhancers ask
for low-key lighting, fog, film grain and a grim palette; the negative prompt
removes bright, cheerful or cute outputs that SD1.5 defaults to. Portrait
512x768 for looming figures and corridors; DPM++ 2M Karras at 30 steps for
detail in the shadows; cfg 7.5 holds the mood terms. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "bright, cheerful, cute, colorful, sunny, cartoon, anime, "
    "worst quality, low quality, blurry, jpeg artifacts, text, watermark, signature"
)


@style(
    name="horror",
    keywords=("horror", "creepy", "scary", "eerie", "nightmare"),
    description="Dark cinematic horror: unsettling atmosphere, deep shadows, desaturated colour.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"dark horror art, {prompt}, unsettling atmosphere, dim low-key lighting, "
            "deep shadows, fog, desaturated colors, film grain, cinematic, highly detailed"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=512,
        height=768,
        steps=30,
        cfg=7.5,
    )
