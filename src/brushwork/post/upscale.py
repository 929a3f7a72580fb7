"""Image upscalers (ESRGAN, Real-ESRGAN, SwinIR, HAT, DAT, ...) through spandrel, tiled.

* `load_upscaler` reads a model file and lets spandrel detect its
  architecture. `.safetensors` always loads; pickle files (`.pth .pt .ckpt
  .bin`) only with `allow_pickle`, and then with `torch.load(weights_only=True)`
  (spandrel's own loader unpickles with a restricted unpickler and tries
  TorchScript for `.pt`; we read the state dict ourselves and hand it to
  spandrel's registry). Anything that is not an RGB→RGB image model
  (a LoRA, random bytes, a face restorer, an inpainter) is one
  `InvalidRequest("upscaler", ...)` line, never spandrel's traceback.
* `upscale` runs the model over overlapping tiles of at most `tile`×`tile`
  input pixels, so device memory is bounded by one tile whatever the image
  size. Overlaps are blended with linear feather weights that sum to one,
  so there are no seams; the output is accumulated in a float32 CPU band a
  tile-row high and finished rows are written out as uint8. Deterministic.
* `upscale_by` runs the model once and Lanczos-resizes to exactly
  `round(w*scale) x round(h*scale)` when the factor differs from the model's.
* `UpscalerCache` keeps loaded models warm (keyed by file path, size, mtime,
  device, dtype) and counts loads; `Upscalers` is the name-based front the
  engine and CLI use (`upscalers(image, "4x-UltraSharp", 2.0)`).

Built-in upscalers that need no model file use A1111's names: **"Lanczos"**
is a plain Lanczos resize, **"None"** leaves the image as it is (scale 1).
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brushwork.errors import BrushworkError, InvalidRequest, ModelUnavailable, NotFound

if TYPE_CHECKING:
    from PIL import Image

    from brushwork.models.catalog import ModelCatalog

LANCZOS = "Lanczos"
NONE = "None"
BUILTIN_UPSCALERS = (LANCZOS, NONE)
"""Upscalers without a model file (A1111 names): a plain Lanczos resize, and no change at all."""

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
MIN_TILE = 8

# A1111's display names for the well-known upscalers → the file stem it downloads them as.
A1111_NAMES: dict[str, str] = {
    "R-ESRGAN 4x+": "RealESRGAN_x4plus",
    "R-ESRGAN 4x+ Anime6B": "RealESRGAN_x4plus_anime_6B",
    "R-ESRGAN 2x+": "RealESRGAN_x2plus",
    "R-ESRGAN General 4xV3": "realesr-general-x4v3",
    "R-ESRGAN General WDN 4xV3": "realesr-general-wdn-x4v3",
    "R-ESRGAN AnimeVideo": "realesr-animevideov3",
    "SwinIR 4x": "003_realSR_BSRGAN_DFOWMFC_s64w8_SwinIR-L_x4_GAN",
    "ScuNET GAN": "scunet_color_real_gan",
    "ScuNET PSNR": "scunet_color_real_psnr",
}

OnTile = Callable[[int, int], None]
"""Progress callback: `on_tile(done, total)` after each tile (may raise to cancel)."""


# -- loading -------------------------------------------------------------------------


def _one_line(text: object, limit: int = 160) -> str:
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _not_upscaler(path: Path, why: str) -> InvalidRequest:
    return InvalidRequest("upscaler", f"{path.name}: not a supported upscaler model ({why})")


def check_pickle_policy(path: Path, allow_pickle: bool) -> None:
    """Refuse a pickle weight file unless pickles are allowed (the catalog's wording)."""
    if path.suffix.lower() in PICKLE_SUFFIXES and not allow_pickle:
        raise InvalidRequest(
            "upscaler",
            f"{path.name} is a pickle file, which can run code when loaded; convert it to .safetensors, "
            "or set BRUSHWORK_ALLOW_PICKLE=1 to load it with torch.load(weights_only=True)",
        )


def _read_state_dict(path: Path, allow_pickle: bool) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise InvalidRequest("upscaler", f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # header garbage, truncation, wrong dtype tags...
            raise _not_upscaler(path, f"unreadable safetensors file: {_one_line(exc)}") from None
    if suffix in PICKLE_SUFFIXES:
        check_pickle_policy(path, allow_pickle)
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise _not_upscaler(path, f"torch.load(weights_only=True) failed: {_one_line(exc)}") from None
    raise _not_upscaler(path, f"unknown file type {suffix or '(none)'!r}; expected .safetensors "
                              f"(or {', '.join(PICKLE_SUFFIXES)} with allow_pickle)")


@dataclass(eq=False)
class UpscalerModel:
    """A loaded spandrel image model, ready to run on its device."""

    descriptor: Any  # spandrel.ImageModelDescriptor
    path: Path

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)

    @property
    def device(self) -> Any:
        return self.descriptor.device

    @property
    def dtype(self) -> Any:
        return self.descriptor.dtype

    def __call__(self, batch: Any) -> Any:
        """(1, 3, h, w) float in [0, 1] on the model's device/dtype → (1, 3, h*scale, w*scale)."""
        return self.descriptor(batch)

    def __repr__(self) -> str:
        return f"UpscalerModel({self.name!r}, {self.architecture} {self.scale}x, {self.device}, {self.dtype})"


def load_upscaler(path: Path, *, device: str, dtype: Any, allow_pickle: bool) -> UpscalerModel:
    """Load an image upscaler file; the architecture (ESRGAN, SwinIR, HAT, DAT, ...) is detected.

    `dtype` is a torch dtype or its name ("float16"); a model that does not
    support half precision runs in float32 instead.
    """
    import torch
    from spandrel import (
        MAIN_REGISTRY,
        ImageModelDescriptor,
        UnsupportedModelError,
        canonicalize_state_dict,
    )

    from brushwork.runtime.device import torch_dtype

    path = Path(path)
    state = _read_state_dict(path, allow_pickle)
    if not isinstance(state, dict):
        raise _not_upscaler(path, "the file holds no state dict")
    state = canonicalize_state_dict(state)
    state = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not state:
        raise _not_upscaler(path, "the file holds no tensors")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            descriptor = MAIN_REGISTRY.load(state)
    except UnsupportedModelError:
        raise _not_upscaler(path, "unknown architecture; spandrel recognises ESRGAN, Real-ESRGAN, SwinIR, "
                                  "HAT, DAT, OmniSR, SPAN, ... but not this file's keys") from None
    except Exception as exc:  # a detector matched but the tensors do not fit the architecture
        raise _not_upscaler(path, f"{type(exc).__name__}: {_one_line(exc)}") from None
    arch = descriptor.architecture.name
    if not isinstance(descriptor, ImageModelDescriptor):
        raise _not_upscaler(path, f"{arch} is an {descriptor.purpose.lower()} model, not an upscaler")
    if descriptor.purpose == "FaceSR":
        raise _not_upscaler(path, f"{arch} is a face restoration model, not an upscaler")
    if descriptor.input_channels != 3 or descriptor.output_channels != 3:
        raise _not_upscaler(path, f"{arch} takes {descriptor.input_channels} and gives "
                                  f"{descriptor.output_channels} channels; only RGB→RGB models are supported")
    wanted = torch_dtype(dtype) if isinstance(dtype, str) else dtype
    if (wanted == torch.float16 and not descriptor.supports_half) or (
        wanted == torch.bfloat16 and not descriptor.supports_bfloat16
    ):
        wanted = torch.float32
    descriptor.to(torch.device(device)).to(wanted).eval()
    return UpscalerModel(descriptor, path)


class UpscalerCache:
    """Loaded upscalers by (file path, size, mtime, device, dtype); LRU, `loads` counts real loads."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = max(1, capacity)
        self.loads = 0
        self._models: OrderedDict[tuple[Any, ...], UpscalerModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: Path, *, device: str, dtype: Any, allow_pickle: bool) -> UpscalerModel:
        path = Path(path)
        check_pickle_policy(path, allow_pickle)  # policy holds for cached models too
        try:
            info = path.stat()
        except OSError:
            raise InvalidRequest("upscaler", f"{path} does not exist") from None
        key = (str(path.resolve()), info.st_size, info.st_mtime_ns, str(device), str(dtype))
        with self._lock:  # one load at a time: two threads asking for one file load it once
            model = self._models.get(key)
            if model is not None:
                self._models.move_to_end(key)
                return model
            model = load_upscaler(path, device=device, dtype=dtype, allow_pickle=allow_pickle)
            self.loads += 1
            self._models[key] = model
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
            return model

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def __len__(self) -> int:
        return len(self._models)


# -- tiling --------------------------------------------------------------------------


def tile_spans(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    """[start, end) spans of at most `tile` covering `length`, neighbours overlapping ≥ `overlap`.

    Tiles are spread evenly, so all have the full size once the image is
    larger than one tile (the model sees no sliver tiles).
    """
    if length <= tile:
        return [(0, length)]
    count = math.ceil((length - overlap) / (tile - overlap))
    starts = [(i * (length - tile)) // (count - 1) for i in range(count)]
    return [(s, s + tile) for s in starts]


def _feather(distance: Any, width: int) -> Any:
    """Weight of a tile at `distance` output pixels from its edge inside an overlap `width` wide.

    0 for the outer quarter of the overlap (the pixels a tile's border
    padding spoils most), a linear ramp over the middle half, 1 beyond. Two
    neighbours' weights add up to exactly 1 across their overlap.
    """
    import numpy as np

    trim = width // 4
    return np.clip((distance - trim) / (width - 2 * trim), 0.0, 1.0)


def _axis_weights(spans: list[tuple[int, int]], scale: int) -> list[Any]:
    """Per-tile 1-D weights along one axis (output pixels), normalised to sum to 1 everywhere."""
    import numpy as np

    length = spans[-1][1] * scale
    weights = []
    for i, (start, end) in enumerate(spans):
        size = (end - start) * scale
        centre = np.arange(size, dtype=np.float64) + 0.5
        w = np.ones(size, dtype=np.float64)
        if i > 0 and (width := (spans[i - 1][1] - start) * scale) > 0:
            w = np.minimum(w, _feather(centre, width))
        if i < len(spans) - 1 and (width := (end - spans[i + 1][0]) * scale) > 0:
            w = np.minimum(w, _feather(size - centre, width))
        weights.append(np.maximum(w, 1e-6))  # never exactly 0: every pixel has some tile weighing it
    total = np.zeros(length, dtype=np.float64)
    for (start, end), w in zip(spans, weights, strict=True):
        total[start * scale:end * scale] += w
    return [(w / total[s * scale:e * scale]).astype(np.float32) for (s, e), w in zip(spans, weights, strict=True)]


def effective_tiling(model: UpscalerModel, tile: int, overlap: int) -> tuple[int, int]:
    """Tile and overlap actually used: tile aligned to the model's size multiple, overlap ≤ tile/4."""
    if tile < MIN_TILE:
        raise InvalidRequest("tile", f"tile size must be at least {MIN_TILE} pixels, got {tile}")
    if overlap < 0:
        raise InvalidRequest("tile_overlap", f"tile overlap must be 0 or more, got {overlap}")
    req = model.descriptor.size_requirements
    multiple = max(1, int(req.multiple_of))
    tile = max(int(req.minimum), multiple, tile - tile % multiple)  # full tiles need no padding by spandrel
    return tile, min(overlap, tile // 4)


def upscale(model: UpscalerModel, image: Image.Image, *, tile: int, overlap: int,
            on_tile: OnTile | None = None) -> Image.Image:
    """Upscale by the model's own factor, one tile of ≤ `tile`×`tile` input pixels at a time.

    An image no larger than a tile is a single pass. The tile is rounded down
    to the model's size multiple (e.g. SwinIR's window) so spandrel never pads
    a full tile, and the overlap is capped at tile/4. Non-RGB images are
    converted to RGB (alpha is dropped: callers that keep it resize it apart).
    `on_tile(done, total)` is called after each tile; raising there stops.
    """
    import numpy as np
    import torch
    from PIL import Image as PILImage

    if image.mode != "RGB":
        image = image.convert("RGB")
    tile, overlap = effective_tiling(model, tile, overlap)
    src = np.array(image)  # a writable copy: torch.from_numpy wants one
    height, width = src.shape[:2]
    scale = model.scale
    rows, cols = tile_spans(height, tile, overlap), tile_spans(width, tile, overlap)
    row_w, col_w = _axis_weights(rows, scale), _axis_weights(cols, scale)
    out = np.empty((height * scale, width * scale, 3), dtype=np.uint8)
    band = np.zeros((0, width * scale, 3), dtype=np.float32)  # unfinished output rows, float32
    band_top = 0  # output row of band[0]
    total, done = len(rows) * len(cols), 0

    def flush(until: int) -> None:  # rows above `until` get no more tiles: finish them
        nonlocal band, band_top
        n = until - band_top
        if n > 0:
            out[band_top:until] = np.clip(np.rint(band[:n] * 255.0), 0, 255).astype(np.uint8)
            band, band_top = band[n:], until

    with torch.inference_mode():
        for (y0, y1), wy in zip(rows, row_w, strict=True):
            flush(y0 * scale)
            grow = y1 * scale - (band_top + band.shape[0])
            if grow > 0:
                band = np.concatenate([band, np.zeros((grow, width * scale, 3), dtype=np.float32)])
            for (x0, x1), wx in zip(cols, col_w, strict=True):
                patch = torch.from_numpy(np.ascontiguousarray(src[y0:y1, x0:x1])).permute(2, 0, 1).unsqueeze(0)
                patch = patch.to(model.device).float().div_(255.0).to(model.dtype)
                result = model(patch)[0].permute(1, 2, 0).float().cpu().numpy()
                expected = ((y1 - y0) * scale, (x1 - x0) * scale)
                if result.shape[:2] != expected:
                    raise BrushworkError(f"upscaler {model.name!r} returned {result.shape[1]}x{result.shape[0]} "
                                         f"for a {x1 - x0}x{y1 - y0} tile; expected {scale}x")
                top = y0 * scale - band_top
                band[top:top + expected[0], x0 * scale:x1 * scale] += result * (wy[:, None] * wx[None, :])[..., None]
                done += 1
                if on_tile is not None:
                    on_tile(done, total)
    flush(height * scale)
    return PILImage.fromarray(out, "RGB")


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """`round(w*scale) x round(h*scale)`, halves rounded up, at least 1 pixel."""
    return max(1, math.floor(width * scale + 0.5)), max(1, math.floor(height * scale + 0.5))


def lanczos(image: Image.Image, width: int, height: int) -> Image.Image:
    """A plain Lanczos resize (what the "Lanczos" upscaler does)."""
    from PIL import Image as PILImage

    if image.size == (width, height):
        return image.copy()
    return image.resize((width, height), resample=PILImage.Resampling.LANCZOS)


def upscale_by(model: UpscalerModel, image: Image.Image, scale: float, *, tile: int, overlap: int,
               on_tile: OnTile | None = None) -> Image.Image:
    """Upscale by any factor: one model pass (its native factor), then Lanczos to the exact size."""
    if not scale > 0:
        raise InvalidRequest("scale", f"scale must be greater than 0, got {scale:g}")
    target = scaled_size(image.width, image.height, scale)
    result = upscale(model, image, tile=tile, overlap=overlap, on_tile=on_tile)
    return result if result.size == target else lanczos(result, *target)


# -- names ---------------------------------------------------------------------------


def builtin_upscaler(name: str) -> str | None:
    """The canonical built-in name ("Lanczos", "None") when `name` is one (any case), else None."""
    return next((b for b in BUILTIN_UPSCALERS if b.lower() == name.strip().lower()), None)


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def find_upscaler(catalog: ModelCatalog, name_or_path: str) -> Path:
    """The model file for an upscaler: an existing file path, or a name in `models_dir/upscalers/`.

    Names match file stems exactly, then A1111's display names
    ("R-ESRGAN 4x+" → RealESRGAN_x4plus), then ignoring case and punctuation
    ("dat x4" → DAT_x4). Pickle files are refused unless `allow_pickle`.
    Unknown names raise `NotFound` listing the installed upscalers plus the
    built-in "Lanczos" (a plain resize) and "None" (no change).
    """
    allow_pickle = catalog.settings.allow_pickle
    if builtin_upscaler(name_or_path):
        raise InvalidRequest("upscaler", f"{name_or_path!r} is built in (no model file): "
                                         "'Lanczos' is a plain resize and 'None' leaves the image as it is")
    candidate = Path(name_or_path).expanduser()
    if candidate.is_file():
        check_pickle_policy(candidate, allow_pickle)
        return candidate
    installed = catalog.scan("upscaler")
    stem = name_or_path if name_or_path in installed else A1111_NAMES.get(name_or_path)
    if stem is None or stem not in installed:
        squashed = {_squash(s): s for s in installed}
        stem = squashed.get(_squash(name_or_path))
    if stem is not None and stem in installed:
        path = catalog.adapter("upscaler", stem)  # applies the catalog's pickle policy
        assert path is not None
        return path
    if "/" in name_or_path or "\\" in name_or_path or candidate.suffix.lower() in (".safetensors", *PICKLE_SUFFIXES):
        raise InvalidRequest("upscaler", f"{name_or_path} does not exist")
    raise NotFound("upscaler", name_or_path, [*installed, *BUILTIN_UPSCALERS])


def check_upscale(width: int, height: int, scale: float, limits: Any) -> tuple[int, int]:
    """The output size of upscaling `width`x`height` by `scale`, or `InvalidRequest("scale", ...)`.

    The factor must be in (0, limits.max_upscale] and each output side at
    most `limits.max_size * limits.max_upscale`.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise InvalidRequest("scale", f"scale must be greater than 0, got {scale:g}")
    if scale > limits.max_upscale:
        raise InvalidRequest("scale", f"scale {scale:g} is above the limit of {limits.max_upscale:g}")
    out_w, out_h = scaled_size(width, height, scale)
    largest = int(limits.max_size * limits.max_upscale)
    if max(out_w, out_h) > largest:
        raise InvalidRequest("scale", f"{width}x{height} × {scale:g} = {out_w}x{out_h}, larger than "
                                      f"{largest} pixels a side (limits.max_size × limits.max_upscale)")
    return out_w, out_h


class Upscalers:
    """Upscale by upscaler *name*, models kept warm: what the engine and the CLI call.

        upscalers = Upscalers(catalog, device="cuda", dtype="float16")
        big = upscalers(image, "4x-UltraSharp", 2.0)  # model pass + Lanczos to exactly 2x
    """

    def __init__(self, catalog: ModelCatalog, *, device: str, dtype: Any, tile: int | None = None,
                 overlap: int | None = None, cache: UpscalerCache | None = None) -> None:
        self.catalog = catalog
        self.device = device
        self.dtype = dtype
        self.tile = tile if tile is not None else catalog.settings.upscale_tile
        self.overlap = overlap if overlap is not None else catalog.settings.upscale_tile_overlap
        self.cache = cache or UpscalerCache()

    def model(self, name: str, sha256: str | None = None) -> UpscalerModel:
        """The loaded model for a name/path; with `sha256`, the file must still have that hash."""
        path = find_upscaler(self.catalog, name)
        if sha256 is not None and self.catalog.sha256(path) != sha256:
            raise ModelUnavailable(f"upscaler {name!r} ({path}) has changed since the plan was made "
                                   f"(sha256 {sha256[:10]}… expected)")
        return self.cache.get(path, device=self.device, dtype=self.dtype,
                              allow_pickle=self.catalog.settings.allow_pickle)

    def native_scale(self, name: str) -> float:
        """The factor an upscaler enlarges by on its own: the model's scale; 2 for Lanczos, 1 for None."""
        builtin = builtin_upscaler(name)
        if builtin == NONE:
            return 1.0
        if builtin == LANCZOS:
            return 2.0
        return float(self.model(name).scale)

    def __call__(self, image: Image.Image, name: str, scale: float, sha256: str | None = None,
                 on_tile: OnTile | None = None) -> Image.Image:
        builtin = builtin_upscaler(name)
        if builtin == NONE:
            if scale != 1:
                raise InvalidRequest("scale", f"upscaler 'None' leaves the image as it is; scale {scale:g} "
                                              "needs a model or 'Lanczos'")
            result = image.copy()
        elif builtin == LANCZOS:
            result = lanczos(image.convert("RGB"), *scaled_size(image.width, image.height, scale))
        else:
            return upscale_by(self.model(name, sha256), image, scale, tile=self.tile, overlap=self.overlap,
                              on_tile=on_tile)
        if on_tile is not None:
            on_tile(1, 1)
        return result


# -- metadata ------------------------------------------------------------------------

_FIELDS_LINE = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')  # A1111's field pattern
_UPSCALER_KEY = re.compile(r"(?:^|,\s*)Postprocess upscaler(?: (\d+))?:")


def _quote(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def postprocess_parameters(parameters: str | None, upscaler: str, scale: float) -> dict[str, str]:
    """PNG text chunks recording an upscale in A1111's extras keys.

    Returns `postprocessing` (A1111's own chunk for extras) and, when the
    image had A1111 `parameters`, those with `Postprocess upscale by: S,
    Postprocess upscaler: NAME` appended to the fields line. A second upscale
    of an upscaled image adds numbered keys (`Postprocess upscaler 2`), as the
    Plan's post chain writes them, so the history stays readable.
    """
    lines = parameters.rstrip("\n").split("\n") if parameters and parameters.strip() else []
    fields_line = bool(lines) and len(_FIELDS_LINE.findall(lines[-1])) >= 3
    done = [int(m.group(1) or 1) for m in _UPSCALER_KEY.finditer(lines[-1])] if fields_line else []
    suffix = f" {max(done) + 1}" if done else ""
    added = f"Postprocess upscale by{suffix}: {scale:g}, Postprocess upscaler{suffix}: {_quote(upscaler)}"
    chunks = {"postprocessing": f"Postprocess upscale by: {scale:g}, Postprocess upscaler: {_quote(upscaler)}"}
    if lines:
        if fields_line:
            lines[-1] = f"{lines[-1]}, {added}"
        else:  # a prompt without fields: the keys go on a line of their own
            lines.append(added)
        chunks["parameters"] = "\n".join(lines)
    return chunks
