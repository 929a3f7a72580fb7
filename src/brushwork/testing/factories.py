"""Factories for tiny test models: the pipelines (from `brushwork.models.tiny`, which the demo
model uses too), single-file exports, LoRAs (`brushwork.models.tiny_lora`) and VAEs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from brushwork.models.tiny import (  # noqa: F401  (re-exported for tests and benchmarks)
    CLIP_VOCAB_SIZE,
    SD_SCHEDULER_CONFIG,
    save_pipeline,
    tiny_flux_pipeline,
    tiny_sd15_inpaint_pipeline,
    tiny_sd15_pipeline,
    tiny_sdxl_inpaint_pipeline,
    tiny_sdxl_pipeline,
    tiny_tokenizer,
    tiny_vae,
)
from brushwork.models.tiny_lora import save_tiny_lora  # noqa: F401  (re-exported)


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write an original-layout (A1111/CivitAI) single-file checkpoint."""
    from brushwork.testing.ldm_export import save_single_file as export

    return export(pipe, path)


def save_tiny_vae(folder: Path, seed: int = 1) -> Path:
    """A stand-alone tiny VAE (diffusers folder) with other weights than the pipelines' own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = tiny_vae()
    vae.save_pretrained(folder, safe_serialization=True)
    return folder
