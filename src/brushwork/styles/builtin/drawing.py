"""Hand drawing on paper: graphite sketches, pen and ink, charcoal.

DreamShaper follows medium words (graphite, ink, charcoal) well while keeping
forms coherent. The base look is a monochrome graphite sketch on white paper;
`type` switches the medium. The negative prompt bans colour, photography and
3D renders, which are what the model drifts toward otherwise. Portrait
512x768; Euler a at 24 steps gives loose, sketchy strokes rather than
over-smoothed shading; cfg 7. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "color, colorful, photo, photorealistic, 3d, render, painting, "
    "worst quality, low quality, blurry, smudged, text, watermark, signature"
)

# type -> medium words placed before the user prompt
MEDIA: dict[str, str] = {
    "pencil": "detailed graphite pencil drawing, realistic shading, fine hatching",
    "ink": "pen and ink drawing, bold black linework, stippling, cross-hatching",
    "charcoal": "charcoal drawing, smudged soft shading, heavy contrast, textured paper",
}


@style(
    name="drawing",
    keywords=("drawing", "sketch", "pencil", "charcoal", "line art"),
    description="Hand-drawn look on paper: graphite sketch by default, or pencil/ink/charcoal.",
    types={
        "pencil": "Detailed graphite pencil with realistic shading",
        "ink": "Pen and ink with bold lines and stippling",
        "charcoal": "Charcoal with soft smudged shading and strong contrast",
    },
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    medium = MEDIA[type] if type is not None else "hand-drawn sketch, graphite on paper"
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"{medium}, {prompt}, monochrome, clean linework, "
            "white paper background, artist sketchbook"
        ),
        negative_prompt=NEGATIVE,
        sampler="Euler a",
        width=512,
        height=768,
        steps=24,
        cfg=7.0,
    )
