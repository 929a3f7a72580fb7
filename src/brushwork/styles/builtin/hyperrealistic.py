"""Hyperrealistic photography: images that should pass for DSLR shots.

Realistic Vision is the photoreal SD1.5 checkpoint; its authors recommend the
"RAW photo ... 8k uhd, dslr, film grain" prompt pattern, a long negative prompt
against CGI/illustration looks and anatomy defects, DPM++ SDE Karras and a low
cfg (around 5) — higher cfg makes skin waxy and contrast harsh. 25 steps is
enough for the SDE sampler. 512x768 portrait is the checkpoint's sweet spot.
Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "deformed iris, deformed pupils, semi-realistic, cgi, 3d, render, sketch, "
    "cartoon, drawing, anime, text, cropped, out of frame, worst quality, "
    "low quality, jpeg artifacts, ugly, duplicate, mutilated, extra fingers, "
    "mutated hands, poorly drawn hands, poorly drawn face, mutation, deformed, "
    "blurry, bad anatomy, bad proportions, extra limbs, cloned face, "
    "disfigured, malformed limbs, fused fingers, too many fingers, long neck"
)


@style(
    name="hyperrealistic",
    keywords=("hyperrealistic", "hyper realistic", "photorealistic", "photo", "raw photo"),
    description="Photoreal DSLR look (Realistic Vision): natural light, film grain, fine detail.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="realistic-vision",
        prompt=(
            f"RAW photo, {prompt}, 8k uhd, dslr, soft lighting, high quality, "
            "film grain, Fujifilm XT3, sharp focus, highly detailed"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ SDE Karras",
        width=512,
        height=768,
        steps=25,
        cfg=5.0,
    )
