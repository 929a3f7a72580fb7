"""Cheap live previews: latents → RGB by a fixed linear map, as a small JPEG. No extra model.

Each latent channel contributes a fixed colour (factors fitted for each
family's VAE latent space, as ComfyUI and A1111's "Approx cheap" do), so a
preview costs one 4×3 matrix product and a JPEG encode at latent size
(1/8 of the image side, e.g. 64×64 for 512×512): nothing next to a step.
"""

from __future__ import annotations

import io
from typing import Any

# rows: latent channels 1-4; columns: R, G, B contributions (ComfyUI's latent_formats)
LATENT_RGB: dict[str, tuple[tuple[float, float, float], ...]] = {
    "sd15": ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
             (-0.2120, -0.2616, -0.7177)),
    "sdxl": ((0.3920, 0.4054, 0.4549), (-0.2634, -0.0196, 0.0653), (0.0568, 0.1687, -0.0755),
             (-0.3112, -0.2359, -0.2076)),
}
JPEG_QUALITY = 70


def latent_jpegs(latents: Any, family: str, rows: list[int]) -> list[bytes | None]:
    """A JPEG of latent row i for each i in `rows`; None for each when the family has no known map."""
    factors = LATENT_RGB.get(family)
    if factors is None or getattr(latents, "ndim", 0) != 4 or latents.shape[1] != len(factors):
        return [None for _ in rows]
    import torch
    from PIL import Image

    matrix = torch.tensor(factors, dtype=torch.float32)
    out: list[bytes | None] = []
    for row in rows:
        rgb = latents[row].detach().to("cpu", torch.float32).permute(1, 2, 0) @ matrix  # h, w, 3
        pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        out.append(buffer.getvalue())
    return out
