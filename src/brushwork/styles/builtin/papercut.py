"""Layered papercut art: stacked cut-paper sheets with soft shadows between them.

DreamShaper reproduces the shadow-box look (clean cut edges, layered depth)
reliably when told the medium explicitly. Enhancers name the craft and ask
for depth and soft drop shadows; the negative prompt removes photographic and
painted textures that break the flat-layer illusion. Square 512x512 suits the
centred compositions of papercut art; Euler a at 25 steps keeps shapes
simple and flat; cfg 7. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "photo, photorealistic, painting, brush strokes, gradient noise, 3d render, "
    "worst quality, low quality, blurry, messy edges, text, watermark, signature"
)


@style(
    name="papercut",
    keywords=("papercut", "paper cut", "paper art", "kirigami", "paper craft"),
    description="Layered cut-paper art: shadow-box depth, clean edges, soft shadows.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"papercut style, layered paper art, {prompt}, paper craft, shadow box, "
            "multiple paper layers, intricate cut paper, clean edges, soft drop shadows, "
            "depth, vibrant colors"
        ),
        negative_prompt=NEGATIVE,
        sampler="Euler a",
        width=512,
        height=512,
        steps=25,
        cfg=7.0,
    )
