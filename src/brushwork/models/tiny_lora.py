"""Tiny random LoRAs for the tiny pipelines: the demo LoRA, tests and benchmarks.

One function writes the same random adapter in either of the two layouts
users meet: diffusers/PEFT (`unet.….lora_A.weight`) or kohya/A1111
(`lora_unet_…​.lora_down.weight` + `.alpha`), for the UNet and optionally the
text encoder(s). Loading both must give the same pixels, which is how the
layout conversion is tested. torch and peft are imported inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

Layout = Literal["diffusers", "kohya"]
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
TEXT_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


def _random_layers(model: Any, targets: tuple[str, ...], rank: int, seed: int) -> dict[str, Any]:
    """PEFT LoRA weights (A and B random) for `model`, keyed by module path; `model` is left unchanged."""
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False, target_modules=list(targets))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model.add_adapter(config, adapter_name="export")
    try:
        layers = get_peft_model_state_dict(model, adapter_name="export")
    finally:
        model.delete_adapters("export") if hasattr(model, "delete_adapters") else model.delete_adapter("export")
    return {key: value.detach().clone().contiguous() for key, value in layers.items()}


def _text_model_path(key: str) -> str:
    """transformers 5 flattened CLIPTextModel; real LoRA files name its layers under `text_model.`."""
    return key if key.startswith("text_model.") else f"text_model.{key}"


def _kohya_name(prefix: str, module_path: str) -> str:
    return f"{prefix}_{module_path.replace('.', '_')}"


def _to_kohya(prefix: str, layers: dict[str, Any], rank: int) -> dict[str, Any]:
    """PEFT keys (`a.b.lora_A.weight`) → kohya keys (`prefix_a_b.lora_down.weight`, `.alpha`)."""
    import torch

    out: dict[str, Any] = {}
    for key, value in layers.items():
        module, _, tail = key.rpartition(".lora_")
        name = _kohya_name(prefix, module)
        out[f"{name}.{'lora_down' if tail.startswith('A') else 'lora_up'}.weight"] = value
        out[f"{name}.alpha"] = torch.tensor(float(rank))
    return out


def save_tiny_lora(pipe: Any, path: Path, rank: int = 4, seed: int = 1, layout: Layout = "diffusers",
                   text_encoder: bool = False) -> Path:
    """A random LoRA for `pipe`'s UNet attention (and text encoders, if asked) in `layout`, as .safetensors.

    The same (pipe, rank, seed, text_encoder) gives the same weights in either layout.
    """
    from safetensors.torch import save_file

    unet = _random_layers(pipe.unet, UNET_TARGETS, rank, seed)
    encoders: list[tuple[str, str, dict[str, Any]]] = []
    if text_encoder:
        sdxl = getattr(pipe, "text_encoder_2", None) is not None
        for index, (attr, kohya_prefix) in enumerate(
                (("text_encoder", "lora_te1" if sdxl else "lora_te"), ("text_encoder_2", "lora_te2"))):
            model = getattr(pipe, attr, None)
            if model is not None:
                layers = _random_layers(model, TEXT_TARGETS, rank, seed + 100 + index)
                encoders.append((attr, kohya_prefix, {_text_model_path(k): v for k, v in layers.items()}))
    if layout == "kohya":
        tensors = _to_kohya("lora_unet", unet, rank)
        for _, prefix, layers in encoders:
            tensors.update(_to_kohya(prefix, layers, rank))
    else:
        tensors = {f"unet.{key}": value for key, value in unet.items()}
        for attr, _, layers in encoders:
            tensors.update({f"{attr}.{key}": value for key, value in layers.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path
