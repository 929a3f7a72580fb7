"""Reading text out of image files that came from anywhere, safely.

`read_text_chunks` walks a PNG's chunks itself instead of decoding the image:
text stored after the pixel data (IDAT) is found too, no pixels are decoded
(so a decompression bomb costs nothing), and every text chunk is bounded in
size, compressed or not. Other image formats go through Pillow's header
parser. Every failure is an `InvalidRequest("image", ...)` on one line.

`terminal_safe` makes text from a file harmless to print: control characters
(terminal escape sequences among them) become visible `\\x1b`-style text.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from brushwork.errors import InvalidRequest

__all__ = ["MAX_TEXT_CHUNK", "MAX_TEXT_TOTAL", "MAX_IMAGE_PIXELS", "read_text_chunks", "terminal_safe"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_TEXT_CHUNK = 1 << 20  # bytes of one text value (after decompression); Pillow's MAX_TEXT_CHUNK
MAX_TEXT_TOTAL = 64 << 20  # bytes of all text values together; Pillow's MAX_TEXT_MEMORY
MAX_IMAGE_PIXELS = 2 * 89_478_485  # where Pillow raises DecompressionBombError
_TEXT_TYPES = (b"tEXt", b"zTXt", b"iTXt")

# C0 controls except tab and newline, DEL, C1 controls; bidi overrides/isolates and line/paragraph
# separators, which reorder or break what a terminal shows without being visible themselves.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def terminal_safe(text: str, *, for_json: bool = False) -> str:
    """`text` with every control character shown as an escape (`\\x1b`, `\\u202e`).

    Tab and newline are kept. ESC is escaped, so no terminal escape sequence
    survives. With `for_json`, escapes are JSON's (`\\u001b`), so JSON text
    stays valid JSON.
    """

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        if for_json:
            return f"\\u{code:04x}"
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _UNSAFE.sub(escape, text)


def _refuse(path: Path, why: str) -> InvalidRequest:
    return InvalidRequest("image", f"{terminal_safe(path.name)}: {why}")


def _read_exactly(fh: BinaryIO, size: int) -> bytes | None:
    data = fh.read(size)
    return data if len(data) == size else None


def _inflate(path: Path, key: str, data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise _refuse(path, f"text chunk {key!r} is damaged (bad compressed data)") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _refuse(path, f"text chunk {key!r} is larger than {limit} bytes when decompressed; refused")
    return out


def _text_value(path: Path, kind: bytes, data: bytes, limit: int) -> tuple[str, str] | None:
    """(keyword, text) of a tEXt/zTXt/iTXt chunk body; None for a chunk without a keyword."""
    keyword, sep, rest = data.partition(b"\0")
    if not sep or not keyword:
        return None
    key = keyword.decode("latin-1")
    if kind == b"tEXt":
        return key, rest.decode("latin-1")
    if kind == b"zTXt":  # compression method byte, then zlib data
        return key, _inflate(path, key, rest[1:], limit).decode("latin-1")
    if len(rest) < 2:  # iTXt: flag, method, language\0, translated keyword\0, text
        return None
    compressed = rest[0] == 1
    _language, _, rest = rest[2:].partition(b"\0")
    _translated, _, text = rest.partition(b"\0")
    if compressed:
        text = _inflate(path, key, text, limit)
    return key, text.decode("utf-8", errors="replace")


def _png_text(path: Path, fh: BinaryIO, max_pixels: int) -> dict[str, str]:
    chunks: dict[str, str] = {}
    total = 0
    first = True
    while True:
        head = _read_exactly(fh, 8)
        if head is None:
            return chunks  # truncated after the last whole chunk: keep what was read
        length, kind = struct.unpack(">I4s", head)
        if first:
            if kind != b"IHDR" or length < 8:
                raise _refuse(path, "is a damaged PNG (no image header)")
            first = False
        if kind in _TEXT_TYPES or kind == b"IHDR":
            if kind != b"IHDR" and length > MAX_TEXT_CHUNK:
                raise _refuse(path, f"has a {length}-byte text chunk, more than the {MAX_TEXT_CHUNK} allowed; refused")
            data = _read_exactly(fh, length)
            crc = _read_exactly(fh, 4)
            if data is None or crc is None:
                return chunks
            if zlib.crc32(kind + data) != struct.unpack(">I", crc)[0]:
                raise _refuse(path, f"is a damaged PNG (bad checksum in a {kind.decode()} chunk)")
            if kind == b"IHDR":
                width, height = struct.unpack(">II", data[:8])
                if width * height > max_pixels:
                    raise _refuse(path, f"is {width}x{height} pixels, more than the {max_pixels} allowed "
                                        "(a decompression bomb?); refused")
                continue
            value = _text_value(path, kind, data, MAX_TEXT_CHUNK)
            if value is None:
                continue
            total += len(value[1])
            if total > MAX_TEXT_TOTAL:
                raise _refuse(path, f"carries more than {MAX_TEXT_TOTAL} bytes of text; refused")
            chunks[value[0]] = value[1]  # a repeated keyword: the last one wins, as in Pillow
        elif kind == b"IEND":
            return chunks
        else:
            fh.seek(length + 4, 1)  # skip pixel data and other chunks unread, CRC included


def _other_image_text(path: Path, max_pixels: int) -> dict[str, str]:
    """Text values Pillow finds in a non-PNG image's header (no pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            width, height = img.size
            if width * height > max_pixels:
                raise _refuse(path, f"is {width}x{height} pixels, more than the {max_pixels} allowed "
                                    "(a decompression bomb?); refused")
            return {k: v for k, v in img.info.items() if isinstance(k, str) and isinstance(v, str)}
    except UnidentifiedImageError:
        raise InvalidRequest("image", f"{path} is not an image") from None
    except Image.DecompressionBombError:
        raise _refuse(path, "has more pixels than allowed (a decompression bomb?); refused") from None
    except (ValueError, SyntaxError, struct.error, EOFError) as exc:  # Pillow's ways of saying "damaged"
        raise _refuse(path, f"is a damaged image ({str(exc).splitlines()[0] if str(exc) else 'unreadable'})") from None


def read_text_chunks(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> dict[str, str]:
    """Text metadata of an image: a PNG's tEXt/zTXt/iTXt chunks wherever they are (also after IDAT).

    Refuses, as `InvalidRequest("image", ...)`: a missing file, a folder, a
    file that is not an image, a damaged PNG, a text value over
    `MAX_TEXT_CHUNK` bytes (compressed or not), more than `MAX_TEXT_TOTAL`
    bytes of text, and an image over `max_pixels` pixels.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            signature = fh.read(len(PNG_SIGNATURE))
            if signature == PNG_SIGNATURE:
                return _png_text(path, fh, max_pixels)
    except FileNotFoundError:
        raise InvalidRequest("image", f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequest("image", f"{path} is a folder, not an image file") from None
    except PermissionError:
        raise InvalidRequest("image", f"{path} cannot be read (permission denied)") from None
    except OSError as exc:
        raise InvalidRequest("image", f"{path} cannot be read ({exc.strerror or exc})") from None
    return _other_image_text(path, max_pixels)
