"""Cheap live previews: latents → RGB by a fixed linear map, as a small JPEG. No extra model.

Each latent channel contributes a fixed colour (factors fitted for each
family's VAE latent space, as ComfyUI and A1111's "Approx cheap" do), so a
preview costs one 4×3 (FLUX.1: 16×3) matrix product and a JPEG encode at latent size
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
    # FLUX.1's 16-channel latent space
    "flux": ((-0.0346, 0.0244, 0.0681), (0.0034, 0.0210, 0.0687), (0.0275, -0.0668, -0.0433),
             (-0.0174, 0.0160, 0.0617), (0.0859, 0.0721, 0.0329), (0.0004, 0.0383, 0.0115),
             (0.0405, 0.0861, 0.0915), (-0.0236, -0.0185, -0.0259), (-0.0245, 0.0250, 0.1180),
             (0.1008, 0.0755, -0.0421), (-0.0515, 0.0201, 0.0011), (0.0428, -0.0012, -0.0036),
             (0.0817, 0.0765, 0.0749), (-0.1264, -0.0522, -0.1103), (-0.0280, -0.0881, -0.0499),
             (-0.1262, -0.0982, -0.0778)),
}
LATENT_RGB_BIAS: dict[str, tuple[float, float, float]] = {"flux": (-0.0329, -0.0718, -0.0851)}
JPEG_QUALITY = 70


def unpack_flux(latents: Any, size: tuple[int, int]) -> Any:
    """FLUX.1's step latents are 2×2 patches in a sequence, (B, h/16 · w/16, 64): back to (B, 16, h/8, w/8)."""
    width, height = size
    rows, cols = height // 16, width // 16
    batch, patches, channels = latents.shape
    if patches != rows * cols or channels % 4:
        return latents
    grid = latents.reshape(batch, rows, cols, channels // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return grid.reshape(batch, channels // 4, rows * 2, cols * 2)


def latent_jpegs(latents: Any, family: str, rows: list[int],
                 size: tuple[int, int] | None = None) -> list[bytes | None]:
    """A JPEG of latent row i for each i in `rows`; None for each when the family has no known map.
    `size` (the image's width, height) unpacks FLUX.1's packed latents."""
    factors = LATENT_RGB.get(family)
    if family == "flux" and size is not None and getattr(latents, "ndim", 0) == 3:
        latents = unpack_flux(latents, size)
    if factors is None or getattr(latents, "ndim", 0) != 4 or latents.shape[1] != len(factors):
        return [None for _ in rows]
    import torch
    from PIL import Image

    matrix = torch.tensor(factors, dtype=torch.float32)
    bias = torch.tensor(LATENT_RGB_BIAS.get(family, (0.0, 0.0, 0.0)), dtype=torch.float32)
    out: list[bytes | None] = []
    for row in rows:
        rgb = latents[row].detach().to("cpu", torch.float32).permute(1, 2, 0) @ matrix + bias  # h, w, 3
        pixels = ((rgb + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8).numpy()
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, format="JPEG", quality=JPEG_QUALITY)
        out.append(buffer.getvalue())
    return out
