"""Space art: nebulae, galaxies, planets and astronauts.

DreamShaper renders the saturated, painterly-cinematic look of space art
better than a photo model (real astrophotography is mostly black). Enhancers
ask for cosmic scale, nebula colour and starfields; the negative prompt
removes blur, noise and stray text/frames. Wide 768x512 gives room for
horizons and star fields; DPM++ 2M Karras at 30 steps for fine stars and gas
detail; cfg 7.5 keeps the scene on-prompt amid a lot of tagged detail.
Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "worst quality, low quality, blurry, noisy, jpeg artifacts, oversaturated, "
    "flat, text, watermark, signature, frame, border"
)


@style(
    name="space",
    keywords=("space", "nebula", "galaxy", "astronaut", "cosmos", "planet"),
    description="Cinematic space art: nebulae, galaxies, planets, astronauts.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"epic space art, {prompt}, vast cosmic scale, colorful nebula, "
            "dense starfield, glowing galaxies, cinematic lighting, highly detailed, 8k"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=768,
        height=512,
        steps=30,
        cfg=7.5,
    )
