"""Turn a local model path into a diffusers pipeline, offline.

Three layouts load through diffusers' own loaders with `local_files_only`:
a diffusers folder (also what an HF cache snapshot is), and a single-file
checkpoint (`.safetensors`, or `.ckpt` via torch.load(weights_only=True) once
allowed), whose architecture configs and tokenizers come from the copies
shipped in `brushwork/models/configs` — never from the hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from brushwork.config import Family
from brushwork.errors import ModelUnavailable

PIPELINE_CLASSES: dict[Family, str] = {
    "sd15": "StableDiffusionPipeline",
    "sdxl": "StableDiffusionXLPipeline",
}


def detect_family(path: Path) -> Family:
    """Which architecture a folder or single file holds (reads only headers/configs)."""
    from brushwork.models.offline_configs import (
        detect_family as detect_from_keys,
        family_of_pipeline_config,
        read_checkpoint_keys,
    )

    try:
        if path.is_dir():
            return family_of_pipeline_config(path)
        if path.suffix.lower() == ".safetensors":
            return detect_from_keys(read_checkpoint_keys(path))
        import torch

        state = torch.load(path, map_location="meta", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        return detect_from_keys(state.keys())
    except ValueError as exc:
        raise ModelUnavailable(f"{path.name}: {exc}") from None


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

    cls = getattr(diffusers, PIPELINE_CLASSES[family])
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "local_files_only": True}
    if family == "sd15":
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    else:  # an invisible watermark would make pixels depend on an optional package being installed
        kwargs.update(add_watermarker=False)
    try:
        if path.is_dir():
            return cls.from_pretrained(str(path), **kwargs)
        config_dir = config or materialize_config_dir(family, home)
        return cls.from_single_file(str(path), config=str(config_dir), **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelUnavailable(f"could not load {path}: {type(exc).__name__}: {exc}") from exc
