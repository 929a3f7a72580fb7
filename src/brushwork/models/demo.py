"""The demo model: a tiny random-weight SD 1.5-layout pipeline built on first use.

It exists so every command works out of the box on any machine, with no
download. Its images are noise — it proves the plumbing, not the art. It is
written as an ordinary diffusers folder and loaded through the same code path
as any real model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path

DEMO_VERSION = "v1"
DEMO_LORA = "demo-lora"  # a LoRA made for the demo model, so LoRA commands work out of the box too
_build_lock = threading.Lock()  # threads of one process build it once; processes race safely via rename


def demo_model_dir(home: Path) -> Path:
    return home / "demo" / DEMO_VERSION


def ensure_demo_model(home: Path) -> Path:
    """Build the demo model deterministically if absent; return its folder."""
    target = demo_model_dir(home)
    if (target / "model_index.json").is_file():
        return target
    with _build_lock:
        if not (target / "model_index.json").is_file():
            _build(target)
    return target


def _build(target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        from brushwork.models.loading import quiet_library_bars
        from brushwork.models.tiny import save_pipeline, tiny_sd15_pipeline

        pipe = tiny_sd15_pipeline(staging / "_tokenizer_src", seed=0)
        shutil.rmtree(staging / "_tokenizer_src", ignore_errors=True)
        with quiet_library_bars():
            save_pipeline(pipe, staging / "model")
        try:
            os.replace(staging / "model", target)
        except OSError:
            if not (target / "model_index.json").is_file():  # lost a race only if the winner finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def demo_lora_path(home: Path) -> Path:
    return home / "demo" / f"{DEMO_VERSION}-lora" / f"{DEMO_LORA}.safetensors"


def ensure_demo_lora(home: Path) -> Path:
    """Build the demo LoRA (kohya layout, UNet + text encoder, for the demo model) if absent; return its file.

    Like the demo model it is random: it changes the picture, it does not teach it anything.
    """
    target = demo_lora_path(home)
    if target.is_file():
        return target
    model_dir = ensure_demo_model(home)  # before taking the lock: building the model takes it too
    with _build_lock:
        if not target.is_file():
            _build_lora(model_dir, target)
    return target


def _build_lora(model_dir: Path, target: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from brushwork.models.loading import quiet_library_bars
    from brushwork.models.tiny_lora import save_tiny_lora

    with quiet_library_bars():
        pipe = StableDiffusionPipeline.from_pretrained(str(model_dir), local_files_only=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        save_tiny_lora(pipe, staging, rank=4, seed=7, layout="kohya", text_encoder=True)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
