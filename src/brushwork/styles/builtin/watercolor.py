"""Watercolour painting: soft washes, bleeding edges and paper texture.

DreamShaper handles traditional painting media well. Enhancers ask for wet
washes, pigment blooms and visible paper grain with a light palette; the
negative prompt removes photography, hard digital edges and heavy outlines.
Landscape 768x512 with Euler a at 26 steps matches the brief's benchmark
"Watercolor Sketch" setting — Euler a's looser convergence suits the medium;
cfg 7. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "photo, photorealistic, 3d render, digital art, hard edges, thick outlines, "
    "oversaturated, worst quality, low quality, blurry, text, watermark, signature"
)


@style(
    name="watercolor",
    keywords=("watercolor", "watercolour", "aquarelle"),
    description="Watercolour painting: soft washes, bleeding edges, paper texture.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"watercolor painting, {prompt}, soft wet washes, bleeding edges, "
            "pigment blooms, visible paper texture, light airy palette, delicate details"
        ),
        negative_prompt=NEGATIVE,
        sampler="Euler a",
        width=768,
        height=512,
        steps=26,
        cfg=7.0,
    )
