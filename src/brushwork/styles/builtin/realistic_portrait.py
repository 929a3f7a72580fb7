"""Realistic portrait photography: a person's face and shoulders, studio quality.

Realistic Vision for true-to-life skin. Enhancers describe an 85mm portrait
lens, shallow depth of field and visible skin texture, and focus on the eyes;
the negative prompt targets face/eye defects and the plastic CGI skin look.
Portrait 512x768 with DPM++ 2M Karras at 25 steps is the brief's benchmark
"Realistic Portrait" setting; a lowish cfg 6 keeps skin natural.
Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "deformed iris, deformed pupils, cross-eyed, asymmetrical face, plastic skin, "
    "airbrushed, cgi, 3d, render, cartoon, anime, drawing, worst quality, "
    "low quality, blurry, jpeg artifacts, cropped head, out of frame, "
    "bad anatomy, extra fingers, text, watermark, signature"
)


@style(
    name="realistic_portrait",
    keywords=("portrait", "headshot", "selfie", "profile picture"),
    description=(
        "Photoreal portrait (Realistic Vision): 85mm lens, skin texture, shallow depth of field."
    ),
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="realistic-vision",
        prompt=(
            f"RAW portrait photo, {prompt}, 85mm lens, detailed skin texture, "
            "natural soft lighting, shallow depth of field, bokeh, sharp focus on eyes, "
            "high quality, film grain"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=512,
        height=768,
        steps=25,
        cfg=6.0,
    )
