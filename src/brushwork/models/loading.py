"""Turn a local model path into a diffusers pipeline, offline.

Three layouts load through diffusers' own loaders with `local_files_only`:
a diffusers folder (also what an HF cache snapshot is), and a single-file
checkpoint (`.safetensors`, or `.ckpt` via torch.load(weights_only=True) once
allowed), whose architecture configs and tokenizers come from the copies
shipped in `brushwork/models/configs` — never from the hub.

A model is a family (sd15, sdxl) and a variant: "base" (a 4-channel UNet,
text-to-image) or "inpaint" (a 9-channel UNet: latent + masked-image latent +
mask, e.g. `sd-v1-5-inpainting`), which loads as the family's inpainting
pipeline class, or, for SDXL, "refiner" (OpenCLIP bigG only, aesthetic-score
conditioning), which loads as `StableDiffusionXLImg2ImgPipeline`.
`family_and_variant` tells them apart from the files alone.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.offline_configs import (
    FAMILY_LABELS,
    PIPELINE_CLASSES,
    VARIANT_LABELS,
    Family,
    Variant,
    check_against_config,
    detect_family,
    detect_variant,
    family_of_pipeline_config,
    missing_components,
    read_checkpoint_shapes,
    variant_of_pipeline_folder,
)
from brushwork.models.quiet import quiet_dtype_notice, quiet_library_bars  # noqa: F401  (re-exported)

PICKLE_OBJECTS = "contains Python objects that weights_only loading refuses; convert it to .safetensors"


def pickle_problem(exc: BaseException) -> str | None:
    """One line for a failed `torch.load(weights_only=True)`, or None when `exc` is not one.

    torch's own message is many lines of advice to turn `weights_only` off,
    which is exactly what brushwork must never do.
    """
    text = str(exc)
    if not isinstance(exc, pickle.UnpicklingError) and "weights_only" not in text and "Weights only" not in text:
        if not (isinstance(exc, RuntimeError) and ("zip archive" in text or "PytorchStreamReader" in text)):
            return None
    if "global" in text or "GLOBAL" in text:
        return PICKLE_OBJECTS
    return "not a readable PyTorch checkpoint (damaged, or not a weights file)"


def _pickle_shapes(path: Path) -> dict[str, Any]:
    import torch

    try:
        state = torch.load(path, map_location="meta", weights_only=True)
    except Exception as exc:
        problem = pickle_problem(exc) or f"not a readable PyTorch checkpoint ({type(exc).__name__})"
        raise ValueError(problem) from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError("holds no tensors by name (not a state dict)")
    return {key: tuple(value.shape) for key, value in state.items() if hasattr(value, "shape")}


def checkpoint_shapes(path: Path) -> dict[str, Any]:
    """Tensor name -> shape of a single-file checkpoint; ValueError (one line) when it cannot be read.

    Remembered per (file, size, mtime): resolving a request asks for the same
    header up to three times (family, shape check, clip-skip depth), and a
    server resolves every request.
    """
    try:
        stat = path.stat()
    except OSError:
        return _read_shapes(str(path))  # raises the reader's own one-line error
    return dict(_shapes_of_version(str(path.resolve()), stat.st_size, stat.st_mtime_ns))


@functools.lru_cache(maxsize=16)
def _shapes_of_version(path: str, size: int, mtime_ns: int) -> dict[str, Any]:
    return _read_shapes(path)


def _read_shapes(path: str) -> dict[str, Any]:
    file = Path(path)
    return read_checkpoint_shapes(file) if file.suffix.lower() == ".safetensors" else _pickle_shapes(file)


def _check_single(path: Path, config_dir: Path | None) -> tuple[Family, Variant]:
    """`check_shapes` for a single file, returning the family and variant it found."""
    try:
        shapes = checkpoint_shapes(path)
        family = detect_family(shapes)
        variant = detect_variant(shapes, family)
        check_against_config(shapes, config_dir, family, variant)
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None
    return family, variant


def check_shapes(path: Path, config_dir: Path | None = None) -> None:
    """Refuse a single file whose tensor shapes do not fit the configs it will be loaded with.

    `config_dir` is the diffusers config folder given for the checkpoint
    (`models.NAME.config`); None means the family's standard config for the
    file's variant (for an inpainting file: UNet `in_channels` 9), which
    `load_pipeline` uses then. Folders carry their own configs: nothing to do.
    Raises `ModelUnavailable` naming the file, the component and both values.
    """
    if path.is_dir():
        return
    _check_single(path, config_dir)


def family_and_variant(path: Path, declared: Family | None = None) -> tuple[Family, Variant]:
    """Which architecture a folder or single file holds, and whether it is an inpainting model.

    Checked before any weights load. Single files are recognised from their
    key names and shapes (the UNet's input channels: 4 -> "base", 9 ->
    "inpaint"), folders from `model_index.json` and `unet/config.json`; so
    instruct-pix2pix, SD 2.x or a file missing its VAE is a clear error naming
    the problem, not a size mismatch deep inside diffusers. A declared family
    must agree. Raises `ModelUnavailable`.
    """
    try:
        if path.is_dir():
            family = family_of_pipeline_config(path)
            variant = variant_of_pipeline_folder(path, family)
        else:
            shapes = checkpoint_shapes(path)
            family = detect_family(shapes)
            variant = detect_variant(shapes, family)
            missing = missing_components(shapes, family, variant)
            if missing:
                raise ValueError(
                    f"the file has no weights for {', '.join(missing)} (some uploads ship without a VAE "
                    "or text encoder); use a complete checkpoint"
                )
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None
    if declared is not None and declared != family:
        raise ModelUnavailable(f"{path.name} holds an {family} model, but its catalog entry says {declared}")
    return family, variant


def family_of(path: Path, declared: Family | None = None) -> Family:
    """Which architecture a folder or single file holds (see `family_and_variant`)."""
    return family_and_variant(path, declared)[0]


def model_variant(path: Path, declared_family: Family | None = None) -> Variant:
    """"base" (text-to-image UNet, 4 input channels) or "inpaint" (9) (see `family_and_variant`)."""
    return family_and_variant(path, declared_family)[1]


def _label(family: Family, variant: Variant) -> str:
    return f"{FAMILY_LABELS[family]}{VARIANT_LABELS[variant] or ' text-to-image'}"


def load_pipeline(
    path: Path,
    family: Family,
    *,
    home: Path,
    torch_dtype: Any,
    config: Path | None = None,
    variant: Variant = "base",
    components: dict[str, Any] | None = None,
) -> Any:
    """Load a pipeline for `family` from `path` without touching the network.

    `variant="inpaint"` builds `StableDiffusion(XL)InpaintPipeline` for a
    9-channel inpainting checkpoint; a single file then takes its configs from
    `config` or from the family's shipped configs with the UNet's
    `in_channels` patched to 9 (materialised under `home/configs/<family>-inpaint`).
    The variant must be the one the files hold (`model_variant`): loading an
    inpainting UNet into a text-to-image pipeline, or the reverse, is refused.
    `variant="refiner"` builds an SDXL refiner (`StableDiffusionXLImg2ImgPipeline`
    without the first text encoder) from a folder or from a single file with the
    shipped `configs/sdxl-refiner`. `components` are already-loaded modules to use
    instead of loading the file's own (e.g. the base model's `vae` and
    `text_encoder_2` for its refiner, so they live in memory once).
    """
    import diffusers

    from brushwork.models.offline_configs import materialize_config_dir

    if family == "flux":
        return _load_flux(path, torch_dtype, config)
    cls = getattr(diffusers, PIPELINE_CLASSES[(family, variant)])
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True, **(components or {})}
    if family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    else:  # an invisible watermark would make pixels depend on an optional package being installed
        kwargs.update(add_watermarker=False)
    # A clear refusal instead of a size mismatch deep inside diffusers.
    found = family_and_variant(path) if path.is_dir() else _check_single(path, config)
    if found != (family, variant):
        raise ModelUnavailable(f"{path.name} holds an {_label(*found)} model, not the {_label(family, variant)} "
                               "model it was asked to load as")
    try:
        with quiet_library_bars():
            if path.is_dir():
                return cls.from_pretrained(str(path), **kwargs)
            config_dir = config or materialize_config_dir(family, home, variant)
            return cls.from_single_file(str(path), config=str(config_dir), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        problem = pickle_problem(exc) or f"{type(exc).__name__}: {first_line(exc)}"
        raise ModelUnavailable(f"could not load {path}: {problem}") from exc


def _load_flux(path: Path, torch_dtype: Any, config: Path | None) -> Any:
    """FLUX.1: checked like the others, loaded by `brushwork.models.flux` (a single file needs its companion folder)."""
    from brushwork.models.flux import load_flux_pipeline

    found = family_and_variant(path) if path.is_dir() else _check_single(path, config)
    if found[0] != "flux":
        raise ModelUnavailable(f"{path.name} holds an {_label(*found)} model, not a FLUX.1 model")
    try:
        return load_flux_pipeline(path, torch_dtype=torch_dtype, config=config)
    except (OSError, ValueError, KeyError, RuntimeError, pickle.UnpicklingError) as exc:
        problem = pickle_problem(exc) or f"{type(exc).__name__}: {first_line(exc)}"
        raise ModelUnavailable(f"could not load {path}: {problem}") from exc


def first_line(exc: BaseException) -> str:
    """The first sentence-bearing line of a library's message, without its advice paragraphs."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    for cut in (" If you want to instead", " Please ", " You can "):
        if cut in text:
            text = text[: text.index(cut)]
    return text if len(text) <= 300 else text[:297] + "..."
