"""The model families brushwork runs, as one type every layer can name."""

from __future__ import annotations

from typing import Literal, get_args

Family = Literal["sd15", "sdxl", "flux"]
FAMILIES: tuple[Family, ...] = get_args(Family)

# A text-to-image UNet (4 input channels) or a dedicated inpainting one (9: latents + masked image + mask).
Variant = Literal["base", "inpaint"]
VARIANTS: tuple[Variant, ...] = get_args(Variant)
