"""`brushwork upscale`: enlarge an image with an upscaler model (ESRGAN, SwinIR, HAT, DAT, ...).

    brushwork upscale photo.png -u 4x-UltraSharp            # the model's own factor
    brushwork upscale photo.png -u RealESRGAN_x4plus --scale 2
    brushwork upscale photo.png -u Lanczos --scale 1.5      # plain resize, no model

The result is a new numbered PNG in the output folder (never overwriting);
the input's text metadata (`parameters`, `brushwork-plan`, ...) is kept and
A1111's extras keys are added to `parameters`.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from brushwork.cli.common import (
    console,
    ensure_output_dir,
    err_console,
    handle_errors,
    load_api,
    resolve_output,
)
from brushwork.errors import InvalidRequest

MIN_TILE = 32  # as Settings.upscale_tile
_FORMATS = ["PNG", "JPEG", "WEBP"]
_NUMBERED = re.compile(r"^(\d{5,})-")


def open_image(path: Path, limits: Any) -> tuple[Any, str]:
    """A user's image file and its format, checked exactly as generate's input images are."""
    import io

    from PIL import Image, ImageOps

    from brushwork.storage.assets import read_image_file

    data = read_image_file(path, field="image", limits=limits)
    image = Image.open(io.BytesIO(data))
    image.load()
    return ImageOps.exif_transpose(image), image.format or "PNG"


def _slug(text: str, limit: int = 40) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:limit] or "image"


def _save_numbered(image: Any, folder: Path, stem: str, pnginfo: Any, icc: bytes | None) -> Path:
    """`NNNNN-stem.png`, the counter continuing from the folder's highest; created exclusively."""
    numbers = [int(m.group(1)) for p in folder.glob("*.png") if (m := _NUMBERED.match(p.name))]
    number = max(numbers, default=-1) + 1
    extra = {"icc_profile": icc} if icc else {}
    while True:
        path = folder / f"{number:05d}-{stem}.png"
        number += 1
        try:
            with path.open("xb") as fh:
                image.save(fh, format="PNG", pnginfo=pnginfo, **extra)
            return path
        except FileExistsError:
            continue


@handle_errors
def upscale(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="The image to enlarge (PNG, JPEG or WebP).")],
    upscaler: Annotated[Optional[str], typer.Option("--upscaler", "-u", help="A model in models/upscalers/ (file stem, or A1111 name such as 'R-ESRGAN 4x+'), a path to a model file, or 'Lanczos' (plain resize).")] = None,
    scale: Annotated[Optional[float], typer.Option("--scale", help="Enlargement factor, up to limits.max_upscale (default 4); default: the model's own (2 for Lanczos). Other factors: one model pass, then a Lanczos resize.")] = None,
    output: Annotated[Optional[str], typer.Option("--output", "-o", metavar="<path>", help="Folder for the PNG (default: outputs/ or BRUSHWORK_OUTPUT_DIR).")] = None,
    tile: Annotated[Optional[int], typer.Option("--tile", help="Tile size in input pixels (default: settings upscale_tile, 256); smaller uses less GPU memory.")] = None,
) -> None:
    """Enlarge an image with an upscaler model; writes a new PNG that keeps the input's metadata."""
    from PIL.PngImagePlugin import PngInfo
    from rich.markup import escape

    from brushwork.post.metadata import read_text_chunks
    from brushwork.post.upscale import (
        BUILTIN_UPSCALERS,
        NONE,
        Upscalers,
        builtin_upscaler,
        check_upscale,
        find_upscaler,
        postprocess_parameters,
    )

    api = load_api(ctx)
    settings, catalog = api.settings, api.catalog
    limits = settings.limits
    if upscaler is None or not upscaler.strip():
        installed = ", ".join(sorted(catalog.scan("upscaler"))) or f"(none in {catalog.models_dir / 'upscalers'})"
        raise InvalidRequest("upscaler", f"choose one with --upscaler/-u; installed: {installed}; "
                                         f"built in: {', '.join(BUILTIN_UPSCALERS)}")
    if tile is not None and tile < MIN_TILE:
        raise InvalidRequest("tile", f"tile size must be at least {MIN_TILE} pixels, got {tile}")
    if scale is not None:
        check_upscale(1, 1, scale, limits)  # the factor alone, before any reading or loading
    source, image_format = open_image(image, limits)
    builtin = builtin_upscaler(upscaler)
    path = None if builtin else find_upscaler(catalog, upscaler)
    if builtin == NONE and scale not in (None, 1):
        raise InvalidRequest("scale", "upscaler 'None' leaves the image as it is; use a model or 'Lanczos' to resize")

    device, dtype = "cpu", "float32"  # built-ins need no torch
    if path is not None:
        from brushwork.runtime.device import choose

        policy = choose(settings.device, settings.dtype)
        device, dtype = policy.device, policy.dtype
    upscalers = Upscalers(catalog, device=device, dtype=dtype, tile=tile)
    name = builtin or upscaler
    if path is not None:
        with err_console.status(f"loading {path.name}…"):
            model = upscalers.model(str(path))
        name = model.name
        native = float(model.scale)
    else:
        model = None
        native = upscalers.native_scale(name)
    factor = native if scale is None else scale
    out_w, out_h = check_upscale(source.width, source.height, factor, limits)
    output_dir = ensure_output_dir(resolve_output(output, settings.output_dir))

    has_alpha = "A" in source.getbands() or "transparency" in source.info
    rgb = source.convert("RGB")
    started = time.perf_counter()
    with _tile_progress(f"{escape(name)} ×{factor:g}") as on_tile:
        result = upscalers(rgb, str(path) if path is not None else name, factor, on_tile=on_tile)
    if has_alpha:  # the model sees RGB; transparency is enlarged with Lanczos and put back
        from brushwork.post.upscale import lanczos

        result = result.copy()
        result.putalpha(lanczos(source.convert("RGBA").getchannel("A"), *result.size))
    elapsed = time.perf_counter() - started

    chunks = read_text_chunks(image) if image_format == "PNG" else {}
    info = PngInfo()
    added = postprocess_parameters(chunks.get("parameters"), name, factor)
    for key, value in {**chunks, **added}.items():
        info.add_itxt(key, value)
    saved = _save_numbered(result, output_dir, f"{_slug(image.stem)}-x{factor:g}", info,
                           source.info.get("icc_profile"))
    console.print(str(saved), highlight=False, soft_wrap=True)
    how = f"{model.architecture} {model.scale}x" if model is not None else "plain resize"
    err_console.print(f"{source.width}x{source.height} → {out_w}x{out_h} · {name} ({how}) · {elapsed:.1f}s",
                      highlight=False, markup=False)


@contextmanager
def _tile_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar over tiles on stderr; yields the `on_tile(done, total)` callback."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("tiles"),
               TimeElapsedColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(label, total=None)
        yield lambda done, total: progress.update(task, completed=done, total=total)
