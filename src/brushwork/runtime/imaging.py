"""Pure image operations for img2img, inpaint, outpaint and ControlNet preprocessing.

Everything here takes and returns PIL images (or plain tuples) and is
deterministic: no torch, no device, no randomness except from an explicit
seed. The semantics follow AUTOMATIC1111's webui (`modules/images.py`
`resize_image`, `modules/masking.py`, the inpaint branch of
`StableDiffusionProcessingImg2Img.init` and `apply_overlay`) so that users
moving from A1111 get the same framing, mask softness and seams; the code is
our own. Keeping it torch-free means every rule here is unit-tested in
milliseconds and the engine's runners only glue these steps together.

Typical inpaint flow in a runner::

    mask = prepare_mask(mask_img, w, h, blur=4, invert=False, mode=resize_mode)
    init = resize_to(init_img, w, h, resize_mode)
    init_for_model = fill_masked(init, mask)            # masked content "fill"
    ... generate ...
    result = composite(init, generated, overlay_mask(mask))

"Only masked" inpainting: `crop_region` -> `expand_region` -> crop and
`resize_to(..., "resize_and_fill")` -> generate -> `paste_region`.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from PIL import Image, ImageFilter, ImageOps

ResizeMode = Literal["just_resize", "crop_and_resize", "resize_and_fill"]
"""A1111's img2img resize modes 0, 1 and 2."""

Box = tuple[int, int, int, int]
"""(x1, y1, x2, y2) in pixels, x2/y2 exclusive, as PIL's `crop` takes it."""

_LANCZOS = Image.Resampling.LANCZOS


def resize_to(image: Image.Image, width: int, height: int, mode: ResizeMode = "just_resize") -> Image.Image:
    """Resize to exactly (width, height) with Lanczos, framed as A1111's modes.

    * ``just_resize`` (0): stretch to the target, aspect ratio not kept.
    * ``crop_and_resize`` (1): scale to cover the target keeping the aspect
      ratio, centre it, crop the excess (the centre survives).
    * ``resize_and_fill`` (2): scale to fit inside the target keeping the
      aspect ratio, centre it, and fill the bands by repeating the edge
      rows/columns (the whole image survives).

    Works for any mode PIL can resize (RGB images, "L" masks). When the size
    already matches, returns an unmodified copy (no resampling at all).
    """
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    if image.size == (width, height):
        return image.copy()
    if mode == "just_resize":
        return image.resize((width, height), resample=_LANCZOS)

    ratio, src_ratio = width / height, image.width / image.height
    if mode == "crop_and_resize":
        src_w = width if ratio > src_ratio else image.width * height // image.height
        src_h = height if ratio <= src_ratio else image.height * width // image.width
    elif mode == "resize_and_fill":
        src_w = width if ratio < src_ratio else image.width * height // image.height
        src_h = height if ratio >= src_ratio else image.height * width // image.width
    else:
        raise ValueError(f"unknown resize mode {mode!r}")
    resized = image.resize((max(src_w, 1), max(src_h, 1)), resample=_LANCZOS)
    left, top = width // 2 - resized.width // 2, height // 2 - resized.height // 2

    if mode == "crop_and_resize":
        result = Image.new(image.mode, (width, height))
        result.paste(resized, (left, top))  # paste clips whatever hangs over the edges
        return result

    # resize_and_fill: the resized image fits inside; stretch its edges into the bands.
    pixels = np.asarray(resized)
    pad = [(top, height - top - resized.height), (left, width - left - resized.width)]
    pad += [(0, 0)] * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, pad, mode="edge"))


def binarize(mask: Image.Image, threshold: int = 128) -> Image.Image:
    """Hard mask: 255 where the pixel is above `threshold`, else 0 (A1111's mask rounding)."""
    return mask.convert("L").point(lambda v: 255 if v > threshold else 0)


def blur_mask(mask: Image.Image, blur: int) -> Image.Image:
    """Gaussian-blur an "L" mask with A1111's "mask blur" (sigma = blur, kernel 2*int(2.5*sigma+0.5)+1).

    A1111 blurs x and y separately with OpenCV; one 2D separable call with the
    same kernel and sigma on both axes is the same filter (up to uint8
    rounding between A1111's two passes). ``blur=0`` returns
    the mask unchanged.
    """
    if blur < 0:
        raise ValueError(f"mask blur must be >= 0, got {blur}")
    mask = mask.convert("L")
    if blur == 0:
        return mask.copy()
    kernel = 2 * int(2.5 * blur + 0.5) + 1
    return Image.fromarray(cv2.GaussianBlur(np.asarray(mask), (kernel, kernel), blur))


def prepare_mask(
    mask: Image.Image,
    width: int,
    height: int,
    *,
    blur: int,
    invert: bool,
    mode: ResizeMode = "just_resize",
) -> Image.Image:
    """Turn a user's mask into the "L" mask the runners use (255 = repaint).

    Order as in A1111: convert to "L", invert ("inpaint not masked"), blur at
    the mask's own resolution, then resize to (width, height) with Lanczos and
    the *same* resize mode as the init image, so mask and image stay aligned.
    For "only masked" inpainting pass the init image's own size.
    """
    mask = mask.convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    return resize_to(blur_mask(mask, blur), width, height, mode)


def overlay_mask(mask: Image.Image) -> Image.Image:
    """A1111's overlay mask for whole-picture inpainting: the blurred mask doubled, clipped at 255.

    Doubling pushes the blend half a blur-width outward, so the repainted area
    is fully opaque up to the mask's edge and only the outer half of the blur
    fades into the original. (A1111 uses the mask as-is for "only masked".)
    Zero stays zero, so untouched pixels still come back bit-identical.
    """
    pixels = np.asarray(mask.convert("L"), dtype=np.uint16) * 2
    return Image.fromarray(np.minimum(pixels, 255).astype(np.uint8))


def crop_region(mask: Image.Image, padding: int) -> Box | None:
    """Bounding box of the mask's non-zero pixels grown by `padding` and clamped to the image.

    None when the mask is empty (nothing to inpaint; A1111 then falls back to
    plain img2img).
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    box = mask.convert("L").getbbox()
    if box is None:
        return None
    x1, y1, x2, y2 = box
    return max(x1 - padding, 0), max(y1 - padding, 0), min(x2 + padding, mask.width), min(y2 + padding, mask.height)


def expand_region(box: Box, width: int, height: int, image_w: int, image_h: int) -> Box:
    """Grow `box` to the width:height aspect ratio of the generation size (A1111's expand_crop_region).

    The short side grows evenly on both ends and the box is shifted back
    inside the image when it overflows. It only ever grows, so the masked
    area stays inside; when the image is too small for the ratio the box is
    clamped to the image and the ratio is only approximate.
    """
    x1, y1, x2, y2 = box
    target = width / height
    if (x2 - x1) / (y2 - y1) > target:
        grow = int((x2 - x1) / target - (y2 - y1))
        y1, y2 = _grow_span(y1, y2, grow, image_h)
    else:
        grow = int((y2 - y1) * target - (x2 - x1))
        x1, x2 = _grow_span(x1, x2, grow, image_w)
    return x1, y1, x2, y2


def _grow_span(lo: int, hi: int, grow: int, limit: int) -> tuple[int, int]:
    lo, hi = lo - grow // 2, hi + grow - grow // 2
    if hi > limit:
        lo, hi = lo - (hi - limit), limit
    if lo < 0:
        lo, hi = 0, hi - lo
    return lo, min(hi, limit)


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's masked content "fill": paint the masked area with colours blurred in from around it.

    The unmasked pixels (alpha = 255 - mask) are blurred at radii 256, 64,
    16, 4, 2 and stacked, coarse first, so each masked pixel gets the
    colour of the nearest unmasked surroundings; unmasked pixels come back
    unchanged. It gives the model a plausible colour to start from instead of
    the object being removed.
    """
    rgba = image.convert("RGBA")
    rgba.putalpha(ImageOps.invert(mask.convert("L")))
    premultiplied = rgba.convert("RGBa")  # blur colour weighted by alpha, so masked pixels add nothing
    result = Image.new("RGBA", image.size)
    for radius, repeats in ((256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)):
        layer = premultiplied.filter(ImageFilter.GaussianBlur(radius)) if radius else premultiplied
        layer = layer.convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(layer)
    return result.convert("RGB")


def composite(original: Image.Image, generated: Image.Image, mask: Image.Image) -> Image.Image:
    """Blend `generated` over `original` through `mask` (A1111's apply_overlay).

    255 takes the generated pixel, 0 keeps the original pixel bit-identical
    (so a "keep" area never drifts through the VAE), values in between
    blend linearly. All three must have the same size.
    """
    if not original.size == generated.size == mask.size:
        raise ValueError(f"sizes differ: original {original.size}, generated {generated.size}, mask {mask.size}")
    return Image.composite(generated.convert("RGB"), original.convert("RGB"), mask.convert("L"))


def paste_region(original: Image.Image, generated_crop: Image.Image, box: Box, mask: Image.Image) -> Image.Image:
    """Put an "only masked" result back: fit `generated_crop` into `box` and composite through `mask`.

    The crop is resized to the box with crop_and_resize (as A1111's uncrop);
    outside the box the original is untouched, and inside it `mask` (full
    image size) decides as in `composite`.
    """
    x1, y1, x2, y2 = box
    canvas = original.convert("RGB")
    canvas.paste(resize_to(generated_crop.convert("RGB"), x2 - x1, y2 - y1, "crop_and_resize"), (x1, y1))
    return composite(original, canvas, mask)


def extend_canvas(
    image: Image.Image,
    left: int,
    right: int,
    up: int,
    down: int,
    *,
    fill: Literal["edge", "noise"] = "edge",
    seed: int = 0,
) -> tuple[Image.Image, Image.Image]:
    """Outpainting canvas: the image at offset (left, up) on a bigger canvas, plus its mask.

    The new area is filled by stretching the nearest edge pixels ("edge") or
    with uniform RGB noise from ``numpy.random.default_rng(seed)`` ("noise");
    either way it is deterministic. Returns (canvas RGB, mask "L") with the
    mask 255 on the new area and 0 on the original area, which is unchanged.
    """
    if min(left, right, up, down) < 0:
        raise ValueError(f"extensions must be >= 0, got left={left} right={right} up={up} down={down}")
    pixels = np.asarray(image.convert("RGB"))
    h, w = pixels.shape[:2]
    pad = ((up, down), (left, right), (0, 0))
    if fill == "edge":
        canvas = np.pad(pixels, pad, mode="edge")
    elif fill == "noise":
        canvas = np.random.default_rng(seed).integers(0, 256, (h + up + down, w + left + right, 3), dtype=np.uint8)
        canvas[up:up + h, left:left + w] = pixels
    else:
        raise ValueError(f"unknown fill {fill!r}; valid: edge, noise")
    mask = np.full(canvas.shape[:2], 255, dtype=np.uint8)
    mask[up:up + h, left:left + w] = 0
    return Image.fromarray(canvas), Image.fromarray(mask)


def canny(image: Image.Image, low: int = 100, high: int = 200) -> Image.Image:
    """ControlNet canny map: cv2.Canny edges as a white-on-black 3-channel RGB image.

    Same convention as diffusers' and A1111's ControlNet examples (Canny run on
    the RGB array, the single-channel result repeated to 3 channels).
    """
    if not 0 <= low <= high <= 255:
        raise ValueError(f"canny thresholds must satisfy 0 <= low <= high <= 255, got low={low} high={high}")
    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.repeat(edges[:, :, None], 3, axis=2))
