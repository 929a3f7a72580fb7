"""Deterministic input images for tests, benchmarks and docs: a photo-like gradient and a square mask."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def picture(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """A gradient with a bright square: colour for img2img, edges for canny."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.uint8)
    y = np.linspace(0, 255, height, dtype=np.uint8)
    rgb = np.stack([np.tile(x, (height, 1)), np.tile(y[:, None], (1, width)),
                    np.full((height, width), 90, np.uint8)], -1)
    image = Image.fromarray(rgb)
    ImageDraw.Draw(image).rectangle([width // 4, height // 4, width // 2, height // 2], fill=(250, 250, 250))
    return image


def square_mask(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """White (repaint) on the centre half, black (keep) around it."""
    width, height = size
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle([width // 4, height // 4, width * 3 // 4 - 1, height * 3 // 4 - 1], fill=255)
    return mask
