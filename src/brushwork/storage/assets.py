"""Content-addressed store for input images (init images, masks, control maps).

Why: a Plan must stay small, replayable JSON, so it names its input images by
`AssetRef(sha256, ...)` instead of carrying bytes; the bytes live here once,
at ``root/<first 2 hex>/<sha256>.<ext>``. The same upload twice is stored
once, and replaying a PNG's metadata finds its inputs again by hash.

Everything that enters is hostile until checked: size in bytes, format
(PNG, JPEG, WebP only), pixel count read from the header *before* any
decoding (decompression bombs never decode), then a full decode to catch
truncated or corrupt files. Every refusal is an `InvalidRequest` naming the
field and saying what is allowed. Files are written atomically (temp file in
the same folder + `os.replace`), so a crash never leaves a half-written asset
under its final name, and every read re-checks the sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
import warnings
from pathlib import Path

from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from brushwork.config import Limits
from brushwork.contract.assets import AssetRef, MediaType
from brushwork.errors import BrushworkError, InvalidRequest

_FORMATS: dict[str, MediaType] = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp"}
_EXTENSIONS: dict[str, str] = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_ALLOWED = "a PNG, JPEG or WebP image"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_ROTATED = {5, 6, 7, 8}  # EXIF orientations that swap width and height


def _megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _decode(data: bytes) -> Image.Image:
    """Open lazily; DecompressionBombWarning is an error here (only raised by PIL for huge headers)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=["PNG", "JPEG", "WEBP"])


def _load(image: Image.Image) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image.load()


def _validate(data: bytes, *, field: str, limits: Limits, what: str) -> tuple[MediaType, int, int]:
    """Check untrusted bytes; return (media type, width, height as displayed after EXIF rotation)."""
    if not data:
        raise InvalidRequest(field, f"{what} is empty; expected {_ALLOWED}")
    if len(data) > limits.max_image_bytes:
        raise InvalidRequest(field, f"{what} is {_megabytes(len(data))}; the largest allowed is "
                                    f"{_megabytes(limits.max_image_bytes)}")
    try:
        image = _decode(data)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidRequest(field, f"{what} claims dimensions too large to decode safely; at most "
                                    f"{limits.max_image_pixels} pixels are allowed") from None
    except UnidentifiedImageError:
        raise InvalidRequest(field, f"{what} is not {_ALLOWED}") from None
    except Exception:  # hostile bytes can upset a parser in many ways
        raise InvalidRequest(field, f"{what} cannot be read as an image (truncated or corrupt); expected {_ALLOWED}") from None
    with image:
        width, height = image.size  # from the header: nothing decoded yet
        if width * height > limits.max_image_pixels:
            raise InvalidRequest(field, f"{what} is {width}x{height} = {width * height} pixels; the most allowed is "
                                        f"{limits.max_image_pixels} pixels")
        media_type = _FORMATS.get(image.format or "")
        if media_type is None:
            raise InvalidRequest(field, f"{what} is {image.format or 'an unknown format'}; expected {_ALLOWED}")
        try:
            _load(image)
            orientation = image.getexif().get(ExifTags.Base.Orientation)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise InvalidRequest(field, f"{what} is too large to decode safely") from None
        except Exception:
            raise InvalidRequest(field, f"{what} is truncated or corrupt and cannot be decoded") from None
    if orientation in _ROTATED:
        width, height = height, width
    return media_type, width, height


def read_image_file(path: Path, *, field: str, limits: Limits) -> bytes:
    """The bytes of a user's image file, checked like any input image (size before reading, then content).

    Every command that reads an image file (generate's inputs, `upscale`)
    uses this, so they refuse the same files with the same words.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InvalidRequest(field, f"{path} does not exist") from None
    except OSError as exc:
        raise InvalidRequest(field, f"{path} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(info.st_mode):
        raise InvalidRequest(field, f"{path} is a folder; expected an image file ({_ALLOWED})")
    if not stat.S_ISREG(info.st_mode):
        raise InvalidRequest(field, f"{path} is not a regular file; expected {_ALLOWED}")
    if info.st_size > limits.max_image_bytes:
        raise InvalidRequest(field, f"{path} is {_megabytes(info.st_size)}; the largest allowed is "
                                    f"{_megabytes(limits.max_image_bytes)}")
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_image_bytes + 1)  # bounded even if the file grows meanwhile
    except OSError as exc:
        raise InvalidRequest(field, f"{path} cannot be read ({exc.strerror or exc})") from None
    _validate(data, field=field, limits=limits, what=str(path))
    return data


def _png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG: pixels only (no text, ICC, EXIF, dpi), fixed compression level."""
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    mode = "L" if image.mode in ("1", "L") else "RGBA" if has_alpha else "RGB"
    converted = image.convert(mode)
    clean = Image.frombytes(mode, converted.size, converted.tobytes())  # drops every info entry
    buffer = io.BytesIO()
    clean.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def _mask_channel(image: Image.Image) -> Image.Image:
    """The mask inside a user's image, as "L" (255 = repaint).

    Rule: if the image has transparency *and* its colour is uniform (a
    colour-less mask drawn only in alpha, e.g. black with alpha strokes), the
    alpha channel is the mask. Otherwise the mask is the image's luminance
    (white-on-black masks, with or without an alpha channel).
    """
    if "A" in image.getbands() or "transparency" in image.info:
        rgba = image.convert("RGBA")
        alpha = rgba.getchannel("A")
        colour_uniform = all(lo == hi for lo, hi in rgba.convert("RGB").getextrema())
        if alpha.getextrema() != (255, 255) and colour_uniform:
            return alpha
        return rgba.convert("L")
    return image.convert("L")


class AssetStore:
    """Input images stored once per sha256 under `root` (usually `Settings.assets_dir`)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- writing -----------------------------------------------------------------

    def put_bytes(self, data: bytes, *, field: str, limits: Limits) -> AssetRef:
        """Validate untrusted image bytes and store them unchanged; same bytes, same ref, one file."""
        return self._put(data, field=field, limits=limits, what="the image")

    def put_file(self, path: Path, *, field: str, limits: Limits) -> AssetRef:
        """Store an image file from disk; its size is checked before anything is read."""
        data = read_image_file(path, field=field, limits=limits)
        return self._put(data, field=field, limits=limits, what=str(path))

    def put_image(self, image: Image.Image, *, field: str, limits: Limits) -> AssetRef:
        """Store an in-memory image (e.g. a generated control map) as a deterministic PNG."""
        return self._put(_png_bytes(image), field=field, limits=limits, what="the image")

    def _put(self, data: bytes, *, field: str, limits: Limits, what: str) -> AssetRef:
        media_type, width, height = _validate(data, field=field, limits=limits, what=what)
        ref = AssetRef(sha256=hashlib.sha256(data).hexdigest(), media_type=media_type, width=width, height=height)
        target = self.path(ref)
        if target.is_file() and hashlib.sha256(target.read_bytes()).hexdigest() == ref.sha256:
            return ref  # already stored (a damaged copy is rewritten below)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{ref.short}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(temp, 0o644)
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)
            raise
        return ref

    # -- reading -----------------------------------------------------------------

    def path(self, ref: AssetRef) -> Path:
        """Where the asset's bytes live (whether or not they are there)."""
        if not _SHA256.match(ref.sha256):  # refs built with model_construct skip validation
            raise InvalidRequest("asset", f"{ref.sha256!r} is not a sha256 hex digest")
        return self.root / ref.sha256[:2] / f"{ref.sha256}.{_EXTENSIONS[ref.media_type]}"

    def has(self, ref: AssetRef) -> bool:
        return self.path(ref).is_file()

    def open(self, ref: AssetRef) -> Image.Image:
        """The stored image, fully decoded, after checking its bytes still hash to `ref.sha256`."""
        path = self.path(ref)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InvalidRequest(
                "asset",
                f"input image sha256 {ref.sha256} ({ref.width}x{ref.height}) is not in the asset store at "
                f"{self.root}; use the brushwork home (BRUSHWORK_HOME) that stored it, or store the same file "
                "again by using it once (e.g. `brushwork generate ... --init FILE`) and replay then",
            ) from None
        except OSError as exc:
            raise BrushworkError(f"input image {ref.short}… at {path} cannot be read ({exc.strerror or exc})") from None
        actual = hashlib.sha256(data).hexdigest()
        if actual != ref.sha256:
            raise BrushworkError(f"asset store is corrupted: {path} should hash to {ref.sha256} but hashes to {actual}; "
                                 "delete the file and supply the image again")
        try:
            image = _decode(data)
            _load(image)
        except Exception as exc:
            raise BrushworkError(f"input image {ref.short}… at {path} cannot be decoded ({exc})") from None
        return image

    def open_rgb(self, ref: AssetRef) -> Image.Image:
        """Init image / control image as RGB: EXIF rotation applied, transparency flattened onto white.

        White is A1111's default img2img background colour; dropping alpha
        instead would expose whatever colour sits under transparent pixels.
        """
        image = ImageOps.exif_transpose(self.open(ref))
        if "A" in image.getbands() or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")

    def open_mask(self, ref: AssetRef) -> Image.Image:
        """Mask as "L" (255 = repaint), EXIF rotation applied; see `_mask_channel` for the alpha rule."""
        return _mask_channel(ImageOps.exif_transpose(self.open(ref)))
