"""Few-step generation: a usable image in 1-4 steps instead of 20-30.

Three families of distilled models, each with the sampler, step count and cfg
it was trained for (anything else gives blur or burnt colours):

* LCM-LoRA (the default on SD 1.5, `lcm_xl` on SDXL): the LCM sampler, 4
  steps, cfg 1. The LoRA turns any checkpoint of its family into a
  latent-consistency model; install latent-consistency/lcm-lora-sdv1-5 as
  `loras/lcm.safetensors` and lcm-lora-sdxl as `loras/lcm-sdxl.safetensors`.
  Without the LoRA the style still runs (with a warning), but 4 LCM steps of an
  undistilled model are blurry.
* SDXL-Turbo (`turbo`): a distilled checkpoint (`sdxl-turbo`) trained at
  512x512 for 1-4 steps without guidance: Euler a with trailing ("SGM
  Uniform") timesteps, 1 step, cfg 0.
* SDXL-Lightning (`lightning`): ByteDance's 4-step LoRA on SDXL base
  (`loras/sdxl_lightning_4step_lora.safetensors`, its own file name): Euler
  with trailing timesteps, 4 steps, cfg 0, 1024x1024.

At cfg <= 1 diffusers runs no classifier-free guidance, so the negative prompt
is not used (it is kept for users who raise cfg; LCM-LoRA tolerates 1-2).
Trailing spacing matters: the "leading" spacing in SD configs makes a 1-step
run start at timestep 1 instead of 999. Extra options are ignored.
"""

from __future__ import annotations

from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.spec import style

NEGATIVE = "blurry, low quality, distorted, watermark, text"


@style(
    name="fast",
    keywords=("lcm",),
    description="Drafts in 1-4 steps: LCM-LoRA on SD 1.5; types for SDXL with LCM-LoRA, Turbo or Lightning.",
    types={
        "lcm_xl": "SDXL base + LCM-LoRA (lcm-sdxl): LCM sampler, 4 steps, cfg 1, 1024x1024",
        "turbo": "SDXL-Turbo checkpoint (sdxl-turbo): Euler a SGM Uniform, 1 step, cfg 0, 512x512",
        "lightning": "SDXL base + SDXL-Lightning 4-step LoRA: Euler SGM Uniform, 4 steps, cfg 0, 1024x1024",
    },
)
def build(prompt: str, type: str | None = None, **options) -> Recipe:
    text = f"{prompt}, high quality, detailed"
    if type == "lcm_xl":
        return Recipe(model="sdxl", prompt=text, negative_prompt=NEGATIVE, sampler="LCM", steps=4, cfg=1.0,
                      width=1024, height=1024, loras=(LoraRef(name="lcm-sdxl", weight=1.0),))
    if type == "turbo":
        return Recipe(model="sdxl-turbo", prompt=text, negative_prompt=NEGATIVE, sampler="Euler a SGM Uniform",
                      steps=1, cfg=0.0, width=512, height=512)
    if type == "lightning":
        return Recipe(model="sdxl", prompt=text, negative_prompt=NEGATIVE, sampler="Euler SGM Uniform", steps=4,
                      cfg=0.0, width=1024, height=1024,
                      loras=(LoraRef(name="sdxl_lightning_4step_lora", weight=1.0),))
    return Recipe(model="sd15", prompt=text, negative_prompt=NEGATIVE, sampler="LCM", steps=4, cfg=1.0,
                  width=512, height=512, loras=(LoraRef(name="lcm", weight=1.0),))
