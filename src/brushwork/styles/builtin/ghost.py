"""Ghostly, ethereal scenes: translucent figures, mist and cold spectral light.

DreamShaper handles the painterly-yet-plausible middle ground this needs
(a photo model makes ghosts look like bad double exposures). Enhancers push
translucency, glow and fog, and a cold blue palette; the negative prompt bans
bright cheerful daylight and saturated colour that would break the mood.
Portrait 512x768 suits standing apparitions; DPM++ 2M Karras at 28 steps
renders soft gradients (fog, glow) cleanly; cfg 7. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "worst quality, low quality, blurry, jpeg artifacts, bright daylight, "
    "cheerful, saturated colors, cartoon, text, watermark, signature"
)


@style(
    name="ghost",
    keywords=("ghost", "spirit", "haunted", "phantom", "apparition"),
    description="Ethereal ghosts and haunted places: translucent figures, mist, spectral glow.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="dreamshaper",
        prompt=(
            f"ethereal translucent ghost, {prompt}, glowing spectral light, "
            "misty atmosphere, volumetric fog, cold blue tones, eerie silence, "
            "highly detailed, cinematic"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=512,
        height=768,
        steps=28,
        cfg=7.0,
    )
