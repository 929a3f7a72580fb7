"""Pure image operations: resize framing, masks, compositing, outpaint canvas, canny."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from brushwork.runtime import imaging


def _gradient(width: int, height: int) -> Image.Image:
    """An RGB image where every pixel is distinct enough to notice a shift."""
    ys, xs = np.mgrid[0:height, 0:width]
    pixels = np.stack([xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256], axis=2)
    return Image.fromarray(pixels.astype(np.uint8))


def _square_mask(size: tuple[int, int], box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle((box[0], box[1], box[2] - 1, box[3] - 1), fill=255)
    return mask


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# -- resize_to ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["just_resize", "crop_and_resize", "resize_and_fill"])
@pytest.mark.parametrize("target", [(64, 64), (96, 48), (40, 80)])
def test_resize_gives_exact_target_size(mode, target):
    out = imaging.resize_to(_gradient(120, 60), *target, mode)
    assert out.size == target
    assert out.mode == "RGB"


@pytest.mark.parametrize("mode", ["just_resize", "crop_and_resize", "resize_and_fill"])
def test_identity_resize_returns_equal_pixels_in_a_copy(mode):
    image = _gradient(50, 30)
    out = imaging.resize_to(image, 50, 30, mode)
    assert out is not image
    assert np.array_equal(np.asarray(out), np.asarray(image))


def test_just_resize_stretches_the_whole_image():
    image = Image.new("RGB", (100, 50), (255, 0, 0))
    image.paste((0, 0, 255), (50, 0, 100, 50))  # right half blue
    out = np.asarray(imaging.resize_to(image, 64, 64, "just_resize"))
    assert tuple(out[32, 5]) == (255, 0, 0)
    assert tuple(out[32, 58]) == (0, 0, 255)


def test_crop_and_resize_keeps_the_centre_and_crops_the_sides():
    image = Image.new("RGB", (200, 100), (255, 0, 0))  # red sides
    image.paste((0, 255, 0), (50, 0, 150, 100))  # green centre square
    out = np.asarray(imaging.resize_to(image, 64, 64, "crop_and_resize"))
    # The 100x100 centre scaled to 64x64 fills everything: no red survives.
    assert (np.abs(out.astype(int) - (0, 255, 0)).max(axis=2) <= 8).mean() > 0.95
    assert out[:, :, 0].max() < 64


def test_resize_and_fill_keeps_the_whole_image_and_pads_with_edges():
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 200, 10))  # top rows red
    image.paste((0, 255, 0), (0, 90, 200, 100))  # bottom rows green
    out = np.asarray(imaging.resize_to(image, 64, 64, "resize_and_fill"))
    # The image is scaled to 64x32 and centred; bands of 16 rows above and below.
    assert out.shape == (64, 64, 3)
    middle = out[24:40]
    assert (np.abs(middle.astype(int) - (0, 0, 255)).max(axis=2) <= 8).all()
    # Bands repeat the edge rows: each band row equals the image row it touches.
    assert (out[:16] == out[16]).all()
    assert (out[48:] == out[47]).all()
    assert (np.abs(out[:16].astype(int) - (255, 0, 0)) <= 8).all()  # red top stretched up
    assert (np.abs(out[48:].astype(int) - (0, 255, 0)) <= 8).all()  # green bottom stretched down


def test_resize_and_fill_odd_band_leaves_no_black_rows():
    out = np.asarray(imaging.resize_to(Image.new("RGB", (100, 30), (200, 100, 50)), 64, 63, "resize_and_fill"))
    assert (np.abs(out.astype(int) - (200, 100, 50)) <= 2).all()


def test_resize_works_on_masks():
    mask = imaging.resize_to(_square_mask((40, 20), (10, 5, 30, 15)), 80, 80, "resize_and_fill")
    assert mask.mode == "L" and mask.size == (80, 80)


def test_unknown_resize_mode_is_an_error():
    with pytest.raises(ValueError, match="resize mode"):
        imaging.resize_to(_gradient(10, 20), 20, 20, "stretch")  # type: ignore[arg-type]


# -- masks -------------------------------------------------------------------------


def test_prepare_mask_without_blur_keeps_values_and_with_blur_softens_the_edge():
    mask = _square_mask((64, 64), (16, 16, 48, 48))
    sharp = np.asarray(imaging.prepare_mask(mask, 64, 64, blur=0, invert=False))
    assert np.array_equal(sharp, np.asarray(mask))
    soft = np.asarray(imaging.prepare_mask(mask, 64, 64, blur=4, invert=False))
    assert soft.dtype == np.uint8 and soft.shape == (64, 64)
    assert 0 < soft[32, 16] < 255  # the edge is now a gradient
    assert soft[32, 32] == 255 and soft[0, 0] == 0
    assert len(np.unique(soft)) > 10


def test_prepare_mask_inverts_and_resizes():
    mask = _square_mask((32, 32), (0, 0, 16, 32))  # left half white
    out = imaging.prepare_mask(mask.convert("RGB"), 64, 32, blur=0, invert=True)
    assert out.mode == "L" and out.size == (64, 32)
    pixels = np.asarray(out)
    assert pixels[16, 4] == 0 and pixels[16, 60] == 255


def test_binarize_thresholds():
    mask = Image.fromarray(np.array([[0, 128, 129, 255]], dtype=np.uint8))
    assert np.asarray(imaging.binarize(mask)).tolist() == [[0, 0, 255, 255]]


def test_overlay_mask_doubles_and_keeps_zero():
    mask = Image.fromarray(np.array([[0, 1, 100, 128, 200]], dtype=np.uint8))
    assert np.asarray(imaging.overlay_mask(mask)).tolist() == [[0, 2, 200, 255, 255]]


def test_crop_region_of_empty_mask_is_none():
    assert imaging.crop_region(Image.new("L", (64, 64), 0), 32) is None


def test_crop_region_is_the_square_plus_padding_clamped():
    mask = _square_mask((100, 80), (10, 20, 30, 40))
    assert imaging.crop_region(mask, 0) == (10, 20, 30, 40)
    assert imaging.crop_region(mask, 5) == (5, 15, 35, 45)
    assert imaging.crop_region(mask, 32) == (0, 0, 62, 72)
    assert imaging.crop_region(mask, 500) == (0, 0, 100, 80)


def test_expand_region_reaches_the_target_aspect_ratio_and_contains_the_box():
    box = (100, 100, 228, 132)  # 128x32, wide
    x1, y1, x2, y2 = imaging.expand_region(box, 512, 512, 512, 512)
    assert (x2 - x1, y2 - y1) == (128, 128)
    assert x1 <= 100 and y1 <= 100 and x2 >= 228 and y2 >= 132
    x1, y1, x2, y2 = imaging.expand_region((10, 10, 20, 60), 768, 512, 1000, 1000)  # tall box, wide target
    assert (x2 - x1) / (y2 - y1) == pytest.approx(768 / 512, abs=0.03)
    assert x1 >= 0 and x1 <= 10 and x2 >= 20


def test_expand_region_shifts_back_inside_the_image():
    x1, y1, x2, y2 = imaging.expand_region((0, 0, 64, 16), 64, 64, 200, 200)
    assert (x1, y1, x2, y2) == (0, 0, 64, 64)
    x1, y1, x2, y2 = imaging.expand_region((136, 184, 200, 200), 64, 64, 200, 200)
    assert (x1, y1, x2, y2) == (136, 136, 200, 200)
    # Too small an image for the ratio: clamped to the image.
    assert imaging.expand_region((0, 0, 100, 10), 1, 1, 100, 50) == (0, 0, 100, 50)


# -- fill / composite / paste ------------------------------------------------------


def test_fill_masked_paints_the_hole_from_surroundings_and_keeps_the_rest():
    image = Image.new("RGB", (64, 64), (200, 40, 10))
    image.paste((0, 0, 0), (24, 24, 40, 40))  # a black object to remove
    mask = _square_mask((64, 64), (24, 24, 40, 40))
    out = np.asarray(imaging.fill_masked(image, mask)).astype(int)
    assert (np.abs(out[24:40, 24:40] - (200, 40, 10)) <= 8).all()  # premultiplied blur rounding
    outside = np.asarray(mask) == 0
    assert np.array_equal(out[outside], np.asarray(image).astype(int)[outside])


def test_composite_keeps_zero_mask_pixels_bit_identical_and_takes_generated_at_255():
    rng = np.random.default_rng(0)
    original = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    generated = Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8))
    mask_pixels = np.zeros((48, 48), np.uint8)
    mask_pixels[:, 16:32] = 128
    mask_pixels[:, 32:] = 255
    out = np.asarray(imaging.composite(original, generated, Image.fromarray(mask_pixels)))
    o, g = np.asarray(original), np.asarray(generated)
    assert np.array_equal(out[:, :16], o[:, :16])
    assert np.array_equal(out[:, 32:], g[:, 32:])
    blend = (o[:, 16:32].astype(int) + g[:, 16:32]) / 2
    assert np.abs(out[:, 16:32] - blend).max() <= 1.5
    assert not np.array_equal(out[:, 16:32], o[:, 16:32])


def test_composite_refuses_mismatched_sizes():
    with pytest.raises(ValueError, match="sizes differ"):
        imaging.composite(_gradient(10, 10), _gradient(10, 12), Image.new("L", (10, 10)))


def test_paste_region_puts_the_crop_back_only_where_masked():
    original = _gradient(100, 80)
    mask = _square_mask((100, 80), (30, 20, 50, 40))
    box = (20, 10, 60, 50)
    generated_crop = Image.new("RGB", (64, 64), (1, 2, 3))  # generated at full resolution
    out = np.asarray(imaging.paste_region(original, generated_crop, box, mask))
    assert out.shape == (80, 100, 3)
    inside = np.asarray(mask) == 255
    assert (out[inside] == (1, 2, 3)).all()
    assert np.array_equal(out[~inside], np.asarray(original)[~inside])


# -- outpaint ----------------------------------------------------------------------


@pytest.mark.parametrize("fill", ["edge", "noise"])
def test_extend_canvas_keeps_original_and_masks_exactly_the_new_area(fill):
    image = _gradient(30, 20)
    canvas, mask = imaging.extend_canvas(image, 5, 7, 3, 11, fill=fill, seed=1)
    assert canvas.size == (42, 34) and mask.size == (42, 34)
    assert canvas.mode == "RGB" and mask.mode == "L"
    assert np.array_equal(np.asarray(canvas)[3:23, 5:35], np.asarray(image))
    expected = np.full((34, 42), 255, np.uint8)
    expected[3:23, 5:35] = 0
    assert np.array_equal(np.asarray(mask), expected)


def test_extend_canvas_edge_fill_repeats_the_border():
    image = _gradient(30, 20)
    canvas = np.asarray(imaging.extend_canvas(image, 4, 0, 0, 2)[0])
    assert (canvas[:20, :4] == canvas[:20, 4:5]).all()
    assert (canvas[20:, 4:] == canvas[19, 4:]).all()


def test_extend_canvas_noise_is_deterministic_per_seed():
    image = _gradient(8, 8)
    a = np.asarray(imaging.extend_canvas(image, 8, 0, 0, 0, fill="noise", seed=3)[0])
    b = np.asarray(imaging.extend_canvas(image, 8, 0, 0, 0, fill="noise", seed=3)[0])
    c = np.asarray(imaging.extend_canvas(image, 8, 0, 0, 0, fill="noise", seed=4)[0])
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_extend_canvas_refuses_negative_amounts():
    with pytest.raises(ValueError, match=">= 0"):
        imaging.extend_canvas(_gradient(8, 8), 0, -1, 0, 0)


# -- canny -------------------------------------------------------------------------


def test_canny_gives_a_binary_three_channel_map_with_edges_on_the_rectangle():
    image = Image.new("RGB", (64, 64), (0, 0, 0))
    ImageDraw.Draw(image).rectangle((16, 16, 47, 47), fill=(255, 255, 255))
    edges = np.asarray(imaging.canny(image))
    assert edges.shape == (64, 64, 3)
    assert set(np.unique(edges)) == {0, 255}
    assert (edges[:, :, 0] == edges[:, :, 1]).all() and (edges[:, :, 1] == edges[:, :, 2]).all()
    on = edges[:, :, 0] == 255
    ys, xs = np.nonzero(on)
    assert abs(xs.min() - 16) <= 1 and abs(xs.max() - 47) <= 1
    assert abs(ys.min() - 16) <= 1 and abs(ys.max() - 47) <= 1
    assert not on[24:40, 24:40].any()  # flat inside: no edges
    assert not on[:10].any()  # flat outside


@pytest.mark.parametrize(("low", "high"), [(-1, 100), (200, 100), (0, 256)])
def test_canny_validates_thresholds(low, high):
    with pytest.raises(ValueError, match="low <= high"):
        imaging.canny(Image.new("RGB", (8, 8)), low, high)
