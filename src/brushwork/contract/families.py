"""The model families brushwork runs, as one type every layer can name."""

from __future__ import annotations

from typing import Literal, get_args

Family = Literal["sd15", "sdxl", "flux"]
FAMILIES: tuple[Family, ...] = get_args(Family)

# A text-to-image UNet (4 input channels), a dedicated inpainting one (9: latents + masked image + mask),
# or SDXL's refiner: a 4-channel UNet conditioned on OpenCLIP bigG alone plus an aesthetic score, which only
# finishes a partly denoised latent (img2img), never starts from noise.
Variant = Literal["base", "inpaint", "refiner"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
