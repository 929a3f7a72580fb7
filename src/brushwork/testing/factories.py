"""Factories for tiny test models: the pipelines (from `brushwork.models.tiny`, which the demo
model uses too), single-file exports, LoRAs and VAEs.
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


def save_single_file(pipe: Any, path: Path) -> Path:
    """Write an original-layout (A1111/CivitAI) single-file checkpoint."""
    from brushwork.testing.ldm_export import save_single_file as export

    return export(pipe, path)


def save_tiny_lora(pipe: Any, path: Path, rank: int = 4, seed: int = 1) -> Path:
    """A random LoRA for `pipe`'s UNet attention layers, saved in diffusers' LoRA format.

    `pipe` is left unchanged: the adapter is added, exported and deleted again.
    """
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pipe.unet.add_adapter(config, adapter_name="export")
    try:
        layers = get_peft_model_state_dict(pipe.unet, adapter_name="export")
        path.parent.mkdir(parents=True, exist_ok=True)
        type(pipe).save_lora_weights(str(path.parent), unet_lora_layers=layers, weight_name=path.name,
                                     safe_serialization=True)
    finally:
        pipe.unet.delete_adapters("export")
    return path


def save_tiny_vae(folder: Path, seed: int = 1) -> Path:
    """A stand-alone tiny VAE (diffusers folder) with other weights than the pipelines' own."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = tiny_vae()
    vae.save_pretrained(folder, safe_serialization=True)
    return folder
