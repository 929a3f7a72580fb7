"""Close-up anime portrait: a face filling the frame, with detailed eyes and hair.

Same MeinaMix checkpoint and CLIP skip 2 as `anime`, but framed tightly: a
square 512x512 canvas and "close-up, face focus" tags keep the model from
drawing full bodies, where SD1.5 spends its resolution on the face instead.
DPM++ 2M Karras at 25 steps resolves fine detail (irises, hair strands) better
than Euler a. The negative prompt adds cropping/out-of-frame terms so the face
stays whole. Unknown extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "worst quality, low quality, lowres, bad anatomy, deformed face, "
    "asymmetrical eyes, blurry, cropped, out of frame, full body, "
    "photo, realistic, 3d, text, watermark, signature"
)


@style(
    name="closeup_anime",
    keywords=("closeup", "close-up", "anime face", "anime portrait"),
    description="Tight anime face portrait (MeinaMix): detailed eyes, hair and expression.",
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    return Recipe(
        model="meinamix",
        prompt=(
            f"masterpiece, best quality, anime style, close-up, face focus, {prompt}, "
            "beautiful detailed eyes, detailed hair, soft lighting, bokeh background"
        ),
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=512,
        height=512,
        steps=25,
        cfg=7.0,
        clip_skip=2,
    )
