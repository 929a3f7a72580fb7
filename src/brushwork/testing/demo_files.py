"""Demo companions for the demo model: a tiny ControlNet, a tiny upscaler and two input images.

They let every README command for img2img, inpainting, ControlNet and
upscaling run on a fresh machine with no download. Like the demo model they
have random weights (the ControlNet is derived from the demo UNet, the
upscaler is near-identity), so they prove the plumbing, not the art.
Each file is written atomically and kept if already there.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from brushwork.config import Settings

DEMO_CONTROLNET = "demo-canny"
DEMO_UPSCALER = "demo-2x"


def _atomic(target: Path, write: Callable[[Path], object]) -> bool:
    """Write `target` (file or folder) through a staging path; False when it already existed."""
    if target.exists():
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".demo-", dir=target.parent))
    try:
        write(staging / target.name)
        os.replace(staging / target.name, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return True


def _controlnet(folder: Path, home: Path) -> None:
    from diffusers import StableDiffusionPipeline

    from brushwork.models.demo import ensure_demo_model
    from brushwork.models.loading import quiet_library_bars
    from brushwork.testing.controlnets import save_controlnet, tiny_controlnet

    with quiet_library_bars():
        pipe = StableDiffusionPipeline.from_pretrained(str(ensure_demo_model(home)), local_files_only=True)
        save_controlnet(tiny_controlnet(pipe, seed=0), folder)


def install_demo_files(settings: Settings, inputs_dir: Path) -> list[tuple[Path, bool]]:
    """Install the demo ControlNet and upscaler in the models folder and example inputs in `inputs_dir`.

    Returns (path, newly written) for each file.
    """
    from brushwork.testing.images import picture, square_mask
    from brushwork.testing.upscalers import save_tiny_esrgan

    models = settings.resolved_models_dir
    controlnet = models / "controlnet" / DEMO_CONTROLNET
    upscaler = models / "upscalers" / f"{DEMO_UPSCALER}.safetensors"
    photo, mask = inputs_dir / "photo.png", inputs_dir / "mask.png"
    return [
        (controlnet, _atomic(controlnet, lambda p: _controlnet(p, settings.home))),
        (upscaler, _atomic(upscaler, lambda p: save_tiny_esrgan(p, scale=2))),
        (photo, _atomic(photo, lambda p: picture((512, 512)).save(p))),
        (mask, _atomic(mask, lambda p: square_mask((512, 512)).save(p))),
    ]
