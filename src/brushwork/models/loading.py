"""Turn a local model path into a diffusers pipeline, offline.

Three layouts load through diffusers' own loaders with `local_files_only`:
a diffusers folder (also what an HF cache snapshot is), and a single-file
checkpoint (`.safetensors`, or `.ckpt` via torch.load(weights_only=True) once
allowed), whose architecture configs and tokenizers come from the copies
shipped in `brushwork/models/configs` — never from the hub.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from brushwork.errors import ModelUnavailable
from brushwork.models.offline_configs import (
    PIPELINE_CLASS_BY_FAMILY,
    Family,
    check_against_config,
    detect_family,
    family_of_pipeline_config,
    missing_components,
    read_checkpoint_shapes,
    shipped_config_dir,
)

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
    """Tensor name -> shape of a single-file checkpoint; ValueError (one line) when it cannot be read."""
    return read_checkpoint_shapes(path) if path.suffix.lower() == ".safetensors" else _pickle_shapes(path)


def check_shapes(path: Path, config_dir: Path | None = None) -> None:
    """Refuse a single file whose tensor shapes do not fit the configs it will be loaded with.

    `config_dir` is the diffusers config folder given for the checkpoint
    (`models.NAME.config`); None means the family's standard config, which
    `load_pipeline` uses then. Folders carry their own configs: nothing to do.
    Raises `ModelUnavailable` naming the file, the component and both values.
    """
    if path.is_dir():
        return
    try:
        shapes = checkpoint_shapes(path)
        family = detect_family(shapes)
        check_against_config(shapes, config_dir if config_dir is not None else shipped_config_dir(family), family)
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None


def family_of(path: Path, declared: Family | None = None) -> Family:
    """Which architecture a folder or single file holds, checked before any weights load.

    Single files are recognised from their key names and shapes, so inpainting,
    SD 2.x or a file missing its VAE is a clear error naming the problem, not
    a size mismatch deep inside diffusers. A declared family must agree.
    """
    try:
        if path.is_dir():
            family = family_of_pipeline_config(path)
        else:
            shapes = checkpoint_shapes(path)
            family = detect_family(shapes)
            missing = missing_components(shapes, family)
            if missing:
                raise ValueError(
                    f"the file has no weights for {', '.join(missing)} (some uploads ship without a VAE "
                    "or text encoder); use a complete checkpoint"
                )
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None
    if declared is not None and declared != family:
        raise ModelUnavailable(f"{path.name} holds an {family} model, but its catalog entry says {declared}")
    return family


@contextmanager
def quiet_library_bars() -> Iterator[None]:
    """Hide diffusers'/transformers' own loading bars for the duration, then restore them.

    brushwork reports its own progress; a program using the API should not get
    library progress bars on stderr for every model load.
    """
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    libraries = (diffusers_logging, transformers_logging)
    were_enabled = [lib.is_progress_bar_enabled() for lib in libraries]
    for lib in libraries:
        lib.disable_progress_bar()
    try:
        yield
    finally:
        for lib, enabled in zip(libraries, were_enabled, strict=True):
            if enabled:
                lib.enable_progress_bar()


def load_pipeline(
    path: Path,
    family: Family,
    *,
    home: Path,
    torch_dtype: Any,
    config: Path | None = None,
) -> Any:
    """Load a pipeline for `family` from `path` without touching the network."""
    import diffusers

    from brushwork.models.offline_configs import materialize_config_dir

    cls = getattr(diffusers, PIPELINE_CLASS_BY_FAMILY[family])
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    if family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    else:  # an invisible watermark would make pixels depend on an optional package being installed
        kwargs.update(add_watermarker=False)
    if not path.is_dir():
        check_shapes(path, config)  # a clear refusal instead of a size mismatch deep inside diffusers
    try:
        with quiet_library_bars():
            if path.is_dir():
                return cls.from_pretrained(str(path), **kwargs)
            config_dir = config or materialize_config_dir(family, home)
            return cls.from_single_file(str(path), config=str(config_dir), **kwargs)
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
