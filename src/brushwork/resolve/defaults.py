"""The last layer of every merge: what each model family runs well with when nobody says otherwise."""

from __future__ import annotations

from dataclasses import dataclass

from brushwork.contract.families import Family
from brushwork.contract.params import (
    LATENT_UPSCALER,
    Hires,
    Init,
    Mask,
    Outpaint,
    Post,
    Refine,
    Sampling,
    Size,
)


@dataclass(frozen=True)
class FamilyDefaults:
    """The last layer of every merge: what a family runs well with when nobody says otherwise."""

    sampling: Sampling
    size: Size
    init: Init = Init(strength=0.75, resize_mode="just_resize")
    outpaint_init: Init = Init(strength=1.0, resize_mode="just_resize")  # the new area starts from nothing
    mask: Mask = Mask(mask_blur=4, invert_mask=False, masked_content="original", inpaint_area="whole",
                      inpaint_padding=32)
    outpaint: Outpaint = Outpaint(outpaint_left=0, outpaint_right=0, outpaint_up=0, outpaint_down=0)
    hires: Hires = Hires(hr_upscaler=LATENT_UPSCALER, hr_steps=0, hr_denoise=0.7)
    refine: Refine = Refine(refiner_switch=0.8)
    post: Post = Post()


FAMILY_DEFAULTS: dict[Family, FamilyDefaults] = {
    "sd15": FamilyDefaults(Sampling(sampler="DPM++ 2M Karras", steps=25, cfg=7.0, clip_skip=1),
                           Size(width=512, height=512)),
    "sdxl": FamilyDefaults(Sampling(sampler="DPM++ 2M Karras", steps=30, cfg=6.0, clip_skip=1),
                           Size(width=1024, height=1024)),
    # FLUX.1-schnell: 4 steps of flow-matching Euler; cfg is FluxPipeline's guidance_scale, which only a
    # guidance-distilled (dev) transformer reads, so 0 says "none" (schnell ignores it).
    "flux": FamilyDefaults(Sampling(sampler="Euler", steps=4, cfg=0.0, clip_skip=1),
                           Size(width=1024, height=1024)),
}
