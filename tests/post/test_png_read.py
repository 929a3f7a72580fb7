"""Reading text from images from anywhere: every chunk kind and place, bounded, one-line errors; safe printing."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from brushwork.errors import InvalidRequest
from brushwork.post.png_read import MAX_TEXT_CHUNK, read_text_chunks, terminal_safe


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_with(tmp_path: Path, before: list[bytes] = (), after: list[bytes] = (), size=(8, 8),
              name: str = "x.png") -> Path:
    """A real PNG from Pillow with extra chunks spliced in before the first IDAT and after the last."""
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8), "red").save(plain)
    data = plain.read_bytes()
    signature, rest = data[:8], data[8:]
    chunks = []
    while rest:
        length = struct.unpack(">I", rest[:4])[0]
        chunks.append(rest[: 12 + length])
        rest = rest[12 + length:]
    if size != (8, 8):  # a header claiming other dimensions (pixels are never decoded)
        ihdr = bytearray(chunks[0][8:-4])
        ihdr[0:8] = struct.pack(">II", *size)
        chunks[0] = _chunk(b"IHDR", bytes(ihdr))
    first_idat = next(i for i, c in enumerate(chunks) if c[4:8] == b"IDAT")
    chunks[first_idat:first_idat] = list(before)
    chunks[-1:-1] = list(after)  # before IEND
    path = tmp_path / name
    path.write_bytes(signature + b"".join(chunks))
    return path


def _itxt(key: str, text: str, compressed: bool = False) -> bytes:
    body = text.encode("utf-8")
    if compressed:
        body = zlib.compress(body)
    return _chunk(b"iTXt", key.encode("latin-1") + b"\0" + bytes([int(compressed), 0]) + b"\0\0" + body)


def test_every_text_chunk_kind_reads_like_pillow(tmp_path: Path):
    info = PngInfo()
    info.add_text("Software", "tool")
    info.add_text("Comment", "zipped " * 50, zip=True)
    info.add_itxt("parameters", "a cat, ünïcode ✓", lang="en", tkey="P")
    info.add_itxt("packed", "long text " * 100, zip=True)
    path = tmp_path / "pillow.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    with Image.open(path) as img:
        expected = {k: v for k, v in img.info.items() if isinstance(v, str)}
    assert read_text_chunks(path) == expected
    assert expected["parameters"] == "a cat, ünïcode ✓"


def test_text_after_the_pixel_data_is_found(tmp_path: Path):
    path = _png_with(tmp_path, before=[_chunk(b"tEXt", b"early\0one")],
                     after=[_itxt("parameters", "late text"),
                            _chunk(b"zTXt", b"zipped\0\0" + zlib.compress(b"late zipped"))])
    with Image.open(path) as img:  # what Pillow gives without decoding: the post-IDAT chunks are missing
        assert "parameters" not in img.info
    assert read_text_chunks(path) == {"early": "one", "parameters": "late text", "zipped": "late zipped"}


def test_a_compressed_text_bomb_is_refused_in_one_line(tmp_path: Path):
    bomb = zlib.compress(b"A" * (MAX_TEXT_CHUNK * 8))
    path = _png_with(tmp_path, after=[_chunk(b"zTXt", b"parameters\0\0" + bomb)])
    with pytest.raises(InvalidRequest) as info:
        read_text_chunks(path)
    assert info.value.field == "image"
    assert "'parameters'" in info.value.message and "larger than" in info.value.message
    assert "\n" not in str(info.value) and "Decompressed" not in str(info.value)
    path = _png_with(tmp_path, before=[_itxt("parameters", "B" * (MAX_TEXT_CHUNK * 4), compressed=True)])
    with pytest.raises(InvalidRequest, match="larger than"):
        read_text_chunks(path)


def test_an_oversized_plain_text_chunk_is_refused(tmp_path: Path):
    path = _png_with(tmp_path, before=[_chunk(b"tEXt", b"big\0" + b"x" * (MAX_TEXT_CHUNK + 10))])
    with pytest.raises(InvalidRequest, match=r"text chunk, more than the \d+ allowed"):
        read_text_chunks(path)


def test_huge_dimensions_are_refused_without_decoding(tmp_path: Path):
    path = _png_with(tmp_path, size=(100_000, 100_000), after=[_itxt("parameters", "x")])
    with pytest.raises(InvalidRequest) as info:
        read_text_chunks(path)
    assert "100000x100000 pixels" in info.value.message and "decompression bomb" in info.value.message
    assert "DecompressionBombError" not in str(info.value)
    assert read_text_chunks(path, max_pixels=10**10) == {"parameters": "x"}


def test_a_bomb_in_another_format_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    path = tmp_path / "big.gif"
    Image.new("P", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow itself raises DecompressionBombError
    with pytest.raises(InvalidRequest) as info:
        read_text_chunks(path)
    assert "decompression bomb" in info.value.message and "Error" not in info.value.message


def test_other_formats_go_through_pillow(tmp_path: Path):
    path = tmp_path / "a.gif"
    Image.new("P", (8, 8)).save(path, comment=b"bytes, not text")
    assert read_text_chunks(path) == {}


def test_a_damaged_text_chunk_is_named(tmp_path: Path):
    good = _chunk(b"tEXt", b"key\0value")
    bad = good[:-1] + bytes([good[-1] ^ 0xFF])
    with pytest.raises(InvalidRequest, match="damaged PNG .bad checksum in a tEXt chunk"):
        read_text_chunks(_png_with(tmp_path, before=[bad]))
    broken = _chunk(b"zTXt", b"key\0\0not zlib data")
    with pytest.raises(InvalidRequest, match="'key' is damaged"):
        read_text_chunks(_png_with(tmp_path, before=[broken]))


def test_a_truncated_png_keeps_the_text_read_so_far(tmp_path: Path):
    path = _png_with(tmp_path, before=[_chunk(b"tEXt", b"parameters\0kept")])
    path.write_bytes(path.read_bytes()[:-30])
    assert read_text_chunks(path) == {"parameters": "kept"}


def test_missing_folder_and_not_an_image_keep_their_messages(tmp_path: Path):
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_text_chunks(tmp_path / "missing.png")
    with pytest.raises(InvalidRequest, match="is a folder, not an image file"):
        read_text_chunks(tmp_path)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidRequest, match="is not an image"):
        read_text_chunks(tmp_path / "text.png")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(InvalidRequest, match="is not an image"):
        read_text_chunks(tmp_path / "empty.png")


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text\nwith a newline\tand a tab", "plain text\nwith a newline\tand a tab"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),
        ("bell\x07 back\x08 cr\r nul\x00 del\x7f", "bell\\x07 back\\x08 cr\\x0d nul\\x00 del\\x7f"),
        ("c1 csi \x9b2J nel \x85", "c1 csi \\x9b2J nel \\x85"),
        ("bidi \u202egnp.exe", "bidi \\u202egnp.exe"),
        ("ünïcode ✓ 猫", "ünïcode ✓ 猫"),
    ],
)
def test_terminal_safe_escapes_control_characters(text: str, shown: str):
    assert terminal_safe(text) == shown


def test_terminal_safe_for_json_keeps_json_valid():
    import json

    dumped = json.dumps({"prompt": "a \x9b cat \x1b \u202e"}, ensure_ascii=False)
    safe = terminal_safe(dumped, for_json=True)
    assert "\x9b" not in safe and "\x1b" not in safe and "\u202e" not in safe
    assert json.loads(safe) == {"prompt": "a \x9b cat \x1b \u202e"}
