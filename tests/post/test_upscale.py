"""Upscalers through spandrel: detection, tiling without seams, caching, pickle policy, names.

All with a tiny ESRGAN (`brushwork.testing.upscalers`) whose output is close
to a nearest-neighbour enlargement of its input plus random texture, so
misplaced tiles, swapped channels or a missing blend show up as large errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from brushwork.config import Limits, Settings
from brushwork.errors import InvalidRequest, ModelUnavailable, NotFound
from brushwork.models.catalog import ModelCatalog
from brushwork.post.upscale import (
    UpscalerCache,
    Upscalers,
    _axis_weights,
    check_upscale,
    find_upscaler,
    lanczos,
    load_upscaler,
    postprocess_parameters,
    tile_spans,
    upscale,
    upscale_by,
)
from brushwork.testing.upscalers import save_tiny_esrgan, tiny_esrgan_state_dict

# Measured with the tiny model (seeds 0-2, scale 2 and 4) on the 64x48 test image, tile 32: with overlap 8,
# tiled vs one pass differs by at most 1/255 (mean 0.003/255: rounding of the blended floats, plus the
# texture's reach beyond the overlap); with overlap 0 (abutting tiles) by 44-71/255 at the seams. So a
# tolerance of 2/255 over the *whole* image (seams included) separates blended from seamed clearly.
TILED_TOLERANCE = 2
SEAM_WITHOUT_OVERLAP = 20


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("upscalers")
    return {
        "x2": save_tiny_esrgan(root / "tiny-x2.safetensors", scale=2),
        "x4": save_tiny_esrgan(root / "tiny-x4.safetensors", scale=4, seed=1),
        "x2pth": save_tiny_esrgan(root / "tiny-x2.pth", scale=2),
    }


@pytest.fixture(scope="module")
def x2(files):
    return load_upscaler(files["x2"], device="cpu", dtype="float32", allow_pickle=False)


def _image(width: int = 72, height: int = 56, seed: int = 0) -> Image.Image:
    """Smooth colour gradients (distinct per channel) plus noise: image-like, every tile different."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx / width, yy / height, 0.5 + 0.4 * np.sin(xx / 7 + yy / 5)], axis=-1) * 255
    return Image.fromarray(np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8))


def _arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# -- loading -----------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "scale"), [("x2", 2), ("x4", 4)])
def test_spandrel_detects_the_tiny_esrgan_and_output_is_input_times_scale(files, key, scale):
    model = load_upscaler(files[key], device="cpu", dtype="float32", allow_pickle=False)
    assert (model.architecture, model.scale, model.name) == ("ESRGAN", scale, files[key].stem)
    image = _image(20, 12)
    out = upscale(model, image, tile=256, overlap=16)
    assert out.size == (20 * scale, 12 * scale) and out.mode == "RGB"
    # the tiny model is near identity: shrunk back, the output is the input (channels in order)
    back = _arr(out.resize(image.size, Image.Resampling.BOX))
    same, swapped = np.abs(back - _arr(image)).mean(), np.abs(back - _arr(image)[..., ::-1]).mean()
    assert same < 30 and swapped > 2 * same, (same, swapped)


def test_non_rgb_models_and_non_upscalers_are_refused_in_one_line(tmp_path: Path):
    from safetensors.torch import save_file

    gray = tiny_esrgan_state_dict(2)
    gray["conv_first.weight"] = gray["conv_first.weight"][:, :1].contiguous()
    gray["conv_last.weight"] = gray["conv_last.weight"][:1].contiguous()
    gray["conv_last.bias"] = gray["conv_last.bias"][:1].contiguous()
    save_file(gray, str(tmp_path / "gray.safetensors"))
    lora = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32),
            "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(32, 4)}
    save_file(lora, str(tmp_path / "a-lora.safetensors"))
    (tmp_path / "noise.safetensors").write_bytes(os.urandom(4096))
    (tmp_path / "empty.safetensors").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"onnx")
    expected = {
        "gray.safetensors": "only RGB→RGB models",
        "a-lora.safetensors": "unknown architecture",
        "noise.safetensors": "unreadable safetensors file",
        "empty.safetensors": "unreadable safetensors file",
        "model.onnx": "unknown file type",
    }
    for name, why in expected.items():
        with pytest.raises(InvalidRequest) as err:
            load_upscaler(tmp_path / name, device="cpu", dtype="float32", allow_pickle=True)
        message = str(err.value)
        assert err.value.field == "upscaler" and "\n" not in message, message
        assert message.startswith(f"upscaler: {name}: not a supported upscaler model (") and why in message, message


def test_pickle_files_need_allow_pickle_and_load_weights_only(files, tmp_path: Path):
    with pytest.raises(InvalidRequest, match="pickle file.*BRUSHWORK_ALLOW_PICKLE") as err:
        load_upscaler(files["x2pth"], device="cpu", dtype="float32", allow_pickle=False)
    assert err.value.field == "upscaler"
    allowed = load_upscaler(files["x2pth"], device="cpu", dtype="float32", allow_pickle=True)
    assert allowed.scale == 2
    # a pickle that would run code when unpickled is refused by weights_only, and the code never runs
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.mkdir, (str(marker),))

    torch.save({"params_ema": tiny_esrgan_state_dict(2), "x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(InvalidRequest, match="weights_only"):
        load_upscaler(tmp_path / "evil.pth", device="cpu", dtype="float32", allow_pickle=True)
    assert not marker.exists()


# -- tiling ------------------------------------------------------------------------------


def test_tiles_are_bounded_blended_without_seams_and_deterministic(x2):
    image = _image(64, 48)  # tile 32, overlap 8: 3 x 2 tiles; overlap 0: 2 x 2, abutting on x
    seen: list[tuple[int, ...]] = []
    hook = x2.descriptor.model.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape)))
    progress: list[tuple[int, int]] = []
    try:
        whole = _arr(upscale(x2, image, tile=512, overlap=0))
        assert seen == [(1, 3, 48, 64)]  # smaller than a tile: one pass
        seen.clear()
        tiled = upscale(x2, image, tile=32, overlap=8, on_tile=lambda d, t: progress.append((d, t)))
    finally:
        hook.remove()
    assert len(seen) == 6 and all(shape[2] <= 32 and shape[3] <= 32 for shape in seen), seen
    assert progress == [(i, 6) for i in range(1, 7)]
    diff = np.abs(_arr(tiled) - whole)
    assert diff.max() <= TILED_TOLERANCE, diff.max()
    # the comparison can see seams: abutting tiles without overlap leave them
    seams = np.abs(_arr(upscale(x2, image, tile=32, overlap=0)) - whole)
    assert seams.max() > SEAM_WITHOUT_OVERLAP
    assert np.array_equal(np.asarray(upscale(x2, image, tile=32, overlap=8)), np.asarray(tiled))


def test_tile_layout_covers_everything_and_weights_sum_to_one():
    for length, tile, overlap in [(100, 32, 8), (33, 32, 8), (32, 32, 8), (500, 64, 0), (257, 256, 16)]:
        spans = tile_spans(length, tile, overlap)
        assert spans[0][0] == 0 and spans[-1][1] == length
        assert all(end - start == min(tile, length) for start, end in spans)
        assert all(prev_end - start >= overlap for (_, prev_end), (start, _) in zip(spans, spans[1:], strict=False))
        for scale in (1, 4):
            total = np.zeros(length * scale)
            for (start, end), w in zip(spans, _axis_weights(spans, scale), strict=True):
                total[start * scale:end * scale] += w
            assert np.allclose(total, 1.0, atol=1e-5)


def test_upscale_by_gives_the_exact_rounded_size(x2):
    image = _image(37, 23)
    native = upscale(x2, image, tile=256, overlap=16)
    assert np.array_equal(np.asarray(upscale_by(x2, image, 2.0, tile=256, overlap=16)), np.asarray(native))
    # halves round up: 37*1.5 = 55.5 → 56, 23*1.5 = 34.5 → 35
    assert upscale_by(x2, image, 1.5, tile=256, overlap=16).size == (56, 35)
    three = upscale_by(x2, image, 3.0, tile=256, overlap=16)
    assert three.size == (111, 69)
    assert np.array_equal(np.asarray(three), np.asarray(lanczos(native, 111, 69)))
    with pytest.raises(InvalidRequest, match="scale"):
        upscale_by(x2, image, 0, tile=256, overlap=16)


# -- caching -----------------------------------------------------------------------------


def test_a_second_upscale_with_the_same_file_loads_nothing(files, tmp_path: Path):
    path = save_tiny_esrgan(tmp_path / "cached.safetensors", scale=2)
    cache = UpscalerCache()
    first = cache.get(path, device="cpu", dtype="float32", allow_pickle=False)
    second = cache.get(path, device="cpu", dtype="float32", allow_pickle=False)
    assert second is first and cache.loads == 1
    os.utime(path, ns=(1, 1))  # the file changed: load again
    third = cache.get(path, device="cpu", dtype="float32", allow_pickle=False)
    assert third is not first and cache.loads == 2
    # the pickle policy holds for a cached model too
    cache.get(files["x2pth"], device="cpu", dtype="float32", allow_pickle=True)
    with pytest.raises(InvalidRequest, match="pickle"):
        cache.get(files["x2pth"], device="cpu", dtype="float32", allow_pickle=False)


# -- names, limits, metadata ---------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path: Path, files) -> ModelCatalog:
    folder = tmp_path / "models" / "upscalers"
    folder.mkdir(parents=True)
    (folder / "RealESRGAN_x4plus.safetensors").write_bytes(files["x4"].read_bytes())
    (folder / "DAT_x2.safetensors").write_bytes(files["x2"].read_bytes())
    (folder / "old.pth").write_bytes(files["x2pth"].read_bytes())
    return ModelCatalog(Settings.load(home=tmp_path / "home", models_dir=tmp_path / "models"))


def test_find_upscaler_by_stem_a1111_name_loose_name_or_path(catalog: ModelCatalog, files):
    folder = catalog.models_dir / "upscalers"
    assert find_upscaler(catalog, "RealESRGAN_x4plus") == folder / "RealESRGAN_x4plus.safetensors"
    assert find_upscaler(catalog, "R-ESRGAN 4x+") == folder / "RealESRGAN_x4plus.safetensors"
    assert find_upscaler(catalog, "dat x2") == folder / "DAT_x2.safetensors"
    assert find_upscaler(catalog, str(files["x2"])) == files["x2"]
    with pytest.raises(NotFound) as err:
        find_upscaler(catalog, "4x-UltraSharp")
    assert err.value.valid == sorted(["DAT_x2", "Lanczos", "None", "RealESRGAN_x4plus", "old"])
    with pytest.raises(InvalidRequest, match="pickle"):
        find_upscaler(catalog, "old")
    with pytest.raises(InvalidRequest, match="does not exist"):
        find_upscaler(catalog, "/nowhere/model.safetensors")


def test_upscalers_by_name_builtins_and_pinned_hash(catalog: ModelCatalog):
    upscalers = Upscalers(catalog, device="cpu", dtype="float32")
    image = _image(20, 10)
    assert upscalers(image, "lanczos", 1.5).size == (30, 15)
    assert np.array_equal(np.asarray(upscalers(image, "None", 1)), np.asarray(image))
    with pytest.raises(InvalidRequest, match="scale"):
        upscalers(image, "None", 2)
    assert upscalers(image, "RealESRGAN_x4plus", 2).size == (40, 20)
    assert upscalers.native_scale("RealESRGAN_x4plus") == 4 and upscalers.cache.loads == 1
    path = catalog.models_dir / "upscalers" / "RealESRGAN_x4plus.safetensors"
    assert upscalers(image, "RealESRGAN_x4plus", 4, catalog.sha256(path)).size == (80, 40)
    with pytest.raises(ModelUnavailable, match="changed"):
        upscalers(image, "RealESRGAN_x4plus", 4, "0" * 64)


def test_check_upscale_limits_name_the_resulting_size():
    limits = Limits(max_size=2048, max_upscale=4.0)
    assert check_upscale(1000, 500, 2.5, limits) == (2500, 1250)
    for bad, words in [(0, "greater than 0"), (-1, "greater than 0"), (4.5, "above the limit of 4")]:
        with pytest.raises(InvalidRequest, match=words) as err:
            check_upscale(100, 100, bad, limits)
        assert err.value.field == "scale"
    with pytest.raises(InvalidRequest, match=r"3000x1000 × 4 = 12000x4000, larger than 8192 pixels a side"):
        check_upscale(3000, 1000, 4, limits)


def test_postprocess_keys_are_appended_to_a1111_parameters():
    text = "a cat\nNegative prompt: dog\nSteps: 20, Sampler: Euler a, Seed: 7, Size: 64x64"
    chunks = postprocess_parameters(text, "4x-UltraSharp", 2)
    assert chunks["parameters"] == text + ", Postprocess upscale by: 2, Postprocess upscaler: 4x-UltraSharp"
    assert chunks["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: 4x-UltraSharp"
    again = postprocess_parameters(chunks["parameters"], "R-ESRGAN 4x+", 1.5)["parameters"]
    assert again.endswith("Postprocess upscaler: 4x-UltraSharp, Postprocess upscale by 2: 1.5, "
                          "Postprocess upscaler 2: R-ESRGAN 4x+")
    assert postprocess_parameters("just a prompt", "Lanczos", 2)["parameters"] == (
        "just a prompt\nPostprocess upscale by: 2, Postprocess upscaler: Lanczos")
    assert "parameters" not in postprocess_parameters(None, "x, y", 2)
    assert postprocess_parameters(None, "x, y", 2)["postprocessing"].endswith('Postprocess upscaler: "x, y"')
