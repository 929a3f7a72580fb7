"""Zombies and the undead in a post-apocalyptic world.

DreamShaper renders decayed skin and ruined cities with more texture than the
anime models and less uncanny gore than a pure photo model. Enhancers ask for
rotting flesh, torn clothing, a ruined setting and grim cinematic light; the
negative prompt removes clean/healthy skin and cartoon looks. Portrait
512x768 for figures; DPM++ SDE Karras at 28 steps adds gritty micro-texture;
cfg 7. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "clean skin, healthy, smiling, cute, cartoon, anime, bright colors, "
    "worst quality, low quality, blurry, jpeg artifacts, text, watermark, signature"
)


@style(
    name="zombie",
    keywords=("zombie", "undead", "walking dead", "apocalypse"),
    description="Undead and post-apocalyptic scenes: decayed skin, ruins, grim light.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"horror zombie art, {prompt}, rotting decayed skin, torn clothing, "
            "post-apocalyptic ruins, grim overcast light, gritty texture, "
            "cinematic, highly detailed"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ SDE Karras",
        width=512,
        height=768,
        steps=28,
        cfg=7.0,
    )
