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
