"""Anime illustration: clean cel-shaded characters with vivid colour.

MeinaMix is an anime-tuned SD1.5 checkpoint, trained for CLIP skip 2 as most
anime models are. The booru-style quality tags up front ("masterpiece, best
quality") are what such models respond to; the negative prompt suppresses
photographic/3D looks and the usual hand and anatomy failures. Portrait
512x768 suits full characters; Euler a at 20 steps (the brief's benchmark
setting) converges quickly for flat-shaded art, and cfg 7 keeps the prompt
followed without burning colours. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "worst quality, low quality, lowres, bad anatomy, bad hands, extra fingers, "
    "missing fingers, fused fingers, extra limbs, blurry, jpeg artifacts, "
    "photo, realistic, 3d, monochrome, text, watermark, signature"
)


@style(
    name="anime",
    keywords=("anime", "manga", "waifu", "chibi"),
    description="Anime illustration (MeinaMix): cel shading, vivid colours, detailed eyes.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="meinamix",
        prompt=(
            f"masterpiece, best quality, anime style, {prompt}, "
            "vibrant colors, detailed eyes, cel shading, clean lineart"
        ),
        negative_prompt=NEGATIVE,
        sampler="Euler a",
        width=512,
        height=768,
        steps=20,
        cfg=7.0,
        clip_skip=2,
    )
