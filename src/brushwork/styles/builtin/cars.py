"""Automotive photography, with an optional per-model LoRA.

Cars are a photo subject, so this uses Realistic Vision with studio/motorsport
photography enhancers: glossy paint reflections, detailed bodywork, a
landscape 768x512 frame that fits a car side-on. DPM++ 2M Karras at 28 steps
keeps reflections and panel lines crisp; cfg 7 keeps the requested colour and
setting. A car's silhouette is hard for a base model to get right, so each
`type` adds the car's trigger words to the front of the prompt and applies a
LoRA trained on that car (catalog name = the type, weight 0.7–0.8: strong
enough for the shape, low enough not to freeze the pose and background).
With no type the style works as generic car photography without any LoRA.
Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.spec import style

NEGATIVE = (
    "worst quality, low quality, blurry, jpeg artifacts, deformed car, "
    "distorted wheels, asymmetrical headlights, extra wheels, melted bodywork, "
    "cartoon, drawing, toy, text, watermark, license plate text, signature"
)

# type -> (trigger words put before the user prompt, LoRA weight)
TYPES: dict[str, tuple[str, float]] = {
    "rx7": ("mazda rx-7 fd, pop-up headlights, jdm sports car", 0.8),
    "f1": ("formula one race car, open wheel, aerodynamic wings, racing livery", 0.8),
    "sedan": ("luxury four-door sedan, elegant lines, chrome trim", 0.7),
    "speedtail": ("mclaren speedtail hypercar, teardrop silhouette, long tail", 0.8),
}


@style(
    name="cars",
    keywords=("car", "rx7", "f1", "sedan", "mclaren", "speedtail", "supercar"),
    description="Automotive photography (Realistic Vision); types add a car-specific LoRA.",
    types={
        "rx7": "Mazda RX-7 FD with the rx7 LoRA",
        "f1": "Formula 1 race car with the f1 LoRA",
        "sedan": "Luxury sedan with the sedan LoRA",
        "speedtail": "McLaren Speedtail hypercar with the speedtail LoRA",
    },
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    body = (
        f"automotive photography, {prompt}, sharp focus, glossy paint reflections, "
        "detailed bodywork, cinematic lighting, 8k uhd, dslr"
    )
    loras: tuple[LoraRef, ...] = ()
    if type is not None:
        words, weight = TYPES[type]
        body = f"{words}, {body}"
        loras = (LoraRef(name=type, weight=weight),)
    return Recipe(
        model="realistic-vision",
        prompt=body,
        negative_prompt=NEGATIVE,
        sampler="DPM++ 2M Karras",
        width=768,
        height=512,
        steps=28,
        cfg=7.0,
        loras=loras,
    )
