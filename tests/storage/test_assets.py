"""The content-addressed asset store: hostile inputs refused, bytes stored once, hashes re-checked."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.config import Limits
from brushwork.contract.assets import AssetRef
from brushwork.errors import BrushworkError, InvalidRequest
from brushwork.storage.assets import AssetStore

LIMITS = Limits()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _encoded(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _noise(width: int = 32, height: int = 24, channels: int = 3, seed: int = 0) -> Image.Image:
    shape = (height, width, channels) if channels > 1 else (height, width)
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8))


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG header for a huge image, with a tiny (far too short) IDAT.

    If the store ever decoded it, the error would be about truncation; a
    refusal that names the pixel count proves the header was checked first.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


@pytest.fixture
def store(tmp_path: Path) -> AssetStore:
    return AssetStore(tmp_path / "assets")


def _files(store: AssetStore) -> list[Path]:
    return sorted(p for p in store.root.rglob("*") if p.is_file())


# -- storing -----------------------------------------------------------------------


def test_same_bytes_give_the_same_ref_and_one_file(store):
    data = _png(_noise())
    first = store.put_bytes(data, field="init_image", limits=LIMITS)
    second = store.put_bytes(data, field="init_image", limits=LIMITS)
    assert first == second
    assert first.media_type == "image/png" and (first.width, first.height) == (32, 24)
    files = _files(store)
    assert files == [store.root / first.sha256[:2] / f"{first.sha256}.png"]
    assert files[0].read_bytes() == data  # the original bytes, unchanged


def test_png_round_trips_pixel_identical(store):
    image = _noise(channels=4)
    ref = store.put_bytes(_png(image), field="init_image", limits=LIMITS)
    assert store.has(ref)
    opened = store.open(ref)
    assert opened.mode == "RGBA"
    assert np.array_equal(np.asarray(opened), np.asarray(image))


@pytest.mark.parametrize(("fmt", "media", "ext"), [("JPEG", "image/jpeg", "jpg"), ("WEBP", "image/webp", "webp")])
def test_jpeg_and_webp_are_accepted(store, fmt, media, ext):
    ref = store.put_bytes(_encoded(_noise(), fmt), field="init_image", limits=LIMITS)
    assert ref.media_type == media
    assert store.path(ref).suffix == f".{ext}"
    assert store.open_rgb(ref).size == (32, 24)


def test_put_image_is_deterministic_and_metadata_free(store):
    image = _noise()
    image.info["comment"] = "secret"
    a = store.put_image(image, field="control_image", limits=LIMITS)
    b = store.put_image(_noise(), field="control_image", limits=LIMITS)
    assert a == b
    data = store.path(a).read_bytes()
    assert b"tEXt" not in data and b"secret" not in data
    assert np.array_equal(np.asarray(store.open(a)), np.asarray(image))


def test_put_file_stores_the_file(store, tmp_path):
    path = tmp_path / "in.png"
    path.write_bytes(_png(_noise()))
    ref = store.put_file(path, field="init_image", limits=LIMITS)
    assert store.path(ref).read_bytes() == path.read_bytes()


def test_atomic_write_leaves_no_temp_files(store, monkeypatch):
    store.put_bytes(_png(_noise(seed=1)), field="init_image", limits=LIMITS)
    assert all(not p.name.startswith(".") for p in _files(store))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr("brushwork.storage.assets.os.replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.put_bytes(_png(_noise(seed=2)), field="init_image", limits=LIMITS)
    assert len(_files(store)) == 1  # neither the new asset nor its temp file


# -- refusing ----------------------------------------------------------------------


def test_bomb_is_refused_from_the_header_without_decoding(store):
    with pytest.raises(InvalidRequest) as err:
        store.put_bytes(_png_claiming(5000, 5000), field="init_image", limits=LIMITS)
    assert err.value.field == "init_image"
    assert "5000x5000" in err.value.message and str(LIMITS.max_image_pixels) in err.value.message
    assert _files(store) == []


def test_huge_bomb_beyond_pillows_own_limit_is_refused_cleanly(store):
    with pytest.raises(InvalidRequest) as err:
        store.put_bytes(_png_claiming(30000, 30000), field="mask_image", limits=LIMITS)
    assert err.value.field == "mask_image"
    assert "Error" not in str(err.value)  # no raw exception names
    assert "pixels" in err.value.message


def test_truncated_image_is_refused(store):
    data = _png(_noise(64, 64))
    with pytest.raises(InvalidRequest) as err:
        store.put_bytes(data[: len(data) // 2], field="init_image", limits=LIMITS)
    assert err.value.field == "init_image"
    assert "truncated or corrupt" in err.value.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "empty"),
        (b"hello, this is a text file\n" * 10, "PNG, JPEG or WebP"),
        (b"\x00\x01\x02" * 100, "PNG, JPEG or WebP"),
    ],
)
def test_non_images_are_refused_naming_the_field(store, data, words):
    with pytest.raises(InvalidRequest) as err:
        store.put_bytes(data, field="init_image", limits=LIMITS)
    assert err.value.field == "init_image"
    assert words in err.value.message
    assert _files(store) == []


def test_other_image_formats_are_refused(store):
    with pytest.raises(InvalidRequest, match="PNG, JPEG or WebP") as err:
        store.put_bytes(_encoded(_noise(), "GIF"), field="init_image", limits=LIMITS)
    assert err.value.field == "init_image"


def test_oversized_bytes_are_refused(store, tmp_path):
    limits = Limits(max_image_bytes=2048)
    data = _png(_noise(64, 64))
    assert len(data) > 2048
    with pytest.raises(InvalidRequest, match="largest allowed") as err:
        store.put_bytes(data, field="init_image", limits=limits)
    assert err.value.field == "init_image"
    path = tmp_path / "big.png"
    path.write_bytes(data)
    with pytest.raises(InvalidRequest, match="largest allowed"):
        store.put_file(path, field="init_image", limits=limits)


def test_missing_folder_and_text_paths_are_refused(store, tmp_path):
    with pytest.raises(InvalidRequest, match="does not exist") as err:
        store.put_file(tmp_path / "nope.png", field="init_image", limits=LIMITS)
    assert err.value.field == "init_image" and "nope.png" in err.value.message
    with pytest.raises(InvalidRequest, match="is a folder"):
        store.put_file(tmp_path, field="init_image", limits=LIMITS)
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(InvalidRequest, match="not a PNG, JPEG or WebP") as err:
        store.put_file(text, field="mask_image", limits=LIMITS)
    assert err.value.field == "mask_image" and "notes.txt" in err.value.message


# -- reading -----------------------------------------------------------------------


def test_missing_asset_names_its_short_hash_and_the_store(store):
    ref = AssetRef(sha256="ab" * 32, media_type="image/png", width=8, height=8)
    assert not store.has(ref)
    with pytest.raises(InvalidRequest) as err:
        store.open(ref)
    assert err.value.field == "asset"
    assert ("ab" * 6) in err.value.message and str(store.root) in err.value.message
    assert "not in the asset store" in err.value.message


def test_tampered_bytes_are_detected(store):
    ref = store.put_bytes(_png(_noise()), field="init_image", limits=LIMITS)
    path = store.path(ref)
    path.write_bytes(_png(_noise(seed=9)))
    with pytest.raises(BrushworkError, match="corrupted") as err:
        store.open(ref)
    assert ref.sha256 in str(err.value)
    # Storing the original again repairs the damaged copy.
    store.put_bytes(_png(_noise()), field="init_image", limits=LIMITS)
    assert store.open(ref).size == (32, 24)


def test_open_rgb_applies_exif_rotation_and_flattens_alpha(store):
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    ref = store.put_bytes(_encoded(image, "JPEG", exif=exif.tobytes()), field="init_image", limits=LIMITS)
    assert (ref.width, ref.height) == (20, 40)  # the displayed size
    rgb = store.open_rgb(ref)
    assert rgb.mode == "RGB" and rgb.size == (20, 40)

    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    rgb = store.open_rgb(store.put_image(transparent, field="init_image", limits=LIMITS))
    assert rgb.getpixel((0, 0)) == (255, 255, 255)


def test_open_mask_uses_alpha_only_when_the_colour_is_uniform(store):
    alpha_only = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    alpha_only.paste((0, 0, 0, 255), (0, 0, 4, 8))
    mask = np.asarray(store.open_mask(store.put_image(alpha_only, field="mask_image", limits=LIMITS)))
    assert mask[:, :4].min() == 255 and mask[:, 4:].max() == 0

    drawn = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    drawn.paste((255, 255, 255, 255), (4, 0, 8, 8))
    mask = np.asarray(store.open_mask(store.put_image(drawn, field="mask_image", limits=LIMITS)))
    assert mask[:, 4:].min() == 255 and mask[:, :4].max() == 0

    white_on_black = Image.new("RGB", (8, 8), (0, 0, 0))
    white_on_black.paste((255, 255, 255), (0, 0, 8, 2))
    mask_image = store.open_mask(store.put_image(white_on_black, field="mask_image", limits=LIMITS))
    assert mask_image.mode == "L"
    assert np.asarray(mask_image)[:2].min() == 255 and np.asarray(mask_image)[2:].max() == 0
