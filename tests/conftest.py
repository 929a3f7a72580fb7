"""Shared fixtures: an isolated environment and tiny models built once per session.

Every test runs offline (HF_HUB_OFFLINE=1) with HOME-like folders in a temp
dir, so nothing from the developer's own config, cache or styles leaks in.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

_SANDBOX = Path(tempfile.mkdtemp(prefix="brushwork-tests-"))


def pytest_configure(config: pytest.Config) -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["XDG_CONFIG_HOME"] = str(_SANDBOX / "config")
    os.environ["XDG_CACHE_HOME"] = str(_SANDBOX / "cache")
    os.environ["HF_HOME"] = str(_SANDBOX / "hf")
    for name in list(os.environ):
        if name.startswith("BRUSHWORK_"):
            del os.environ[name]


@dataclass(frozen=True)
class TinyModels:
    """A models folder holding tiny SD 1.5 and SDXL models in every layout."""

    home: Path
    models_dir: Path
    sd15_folder: Path
    sd15_single: Path
    sdxl_folder: Path
    sdxl_single: Path
    lora: Path
    controlnet: Path
    controlnet_sdxl: Path
    upscaler: Path
    flux_folder: Path | None = None  # FLUX.1-schnell layout, catalog name "tinyflux"
    flux_single: Path | None = None  # its transformer as a BFL single file; "tinyflux-single" (companion: the folder)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> TinyModels:
    from brushwork.testing.controlnets import (
        save_controlnet,
        save_controlnet_single_file,
        tiny_controlnet,
    )
    from brushwork.testing.factories import (
        save_pipeline,
        save_single_file,
        save_tiny_lora,
        save_tiny_vae,
        tiny_flux_pipeline,
        tiny_sd15_inpaint_pipeline,
        tiny_sd15_pipeline,
        tiny_sdxl_pipeline,
    )
    from brushwork.testing.flux_export import save_flux_single_file
    from brushwork.testing.upscalers import save_tiny_esrgan

    root = tmp_path_factory.mktemp("tiny")
    checkpoints = root / "models" / "checkpoints"
    sd15 = tiny_sd15_pipeline(root / "tok15")
    sdxl = tiny_sdxl_pipeline(root / "tokxl")
    sd15_folder = save_pipeline(sd15, checkpoints / "tiny-sd15")
    sdxl_folder = save_pipeline(sdxl, checkpoints / "tiny-sdxl")
    save_pipeline(tiny_sd15_inpaint_pipeline(root / "tok15i"), checkpoints / "tiny-sd15-inpaint")
    singles = root / "singles"
    sd15_single = save_single_file(sd15, singles / "tiny-sd15-single.safetensors")
    sdxl_single = save_single_file(sdxl, singles / "tiny-sdxl-single.safetensors")
    controlnets = root / "models" / "controlnet"
    controlnet = save_controlnet(tiny_controlnet(sd15, seed=0), controlnets / "tinycanny")
    save_controlnet_single_file(tiny_controlnet(sd15, seed=1), controlnets / "tinydepth.safetensors")
    controlnet_sdxl = save_controlnet(tiny_controlnet(sdxl, seed=0), controlnets / "tinycanny-xl")
    # after the ControlNets: exporting a LoRA leaves PEFT wrappers in the UNet they are built from
    loras = root / "models" / "loras"
    lora = save_tiny_lora(sd15, loras / "tinylora.safetensors")
    save_tiny_lora(sd15, loras / "tinylora-b.safetensors", seed=3)
    # one adapter (UNet + text encoders) in both file layouts users meet
    save_tiny_lora(sd15, loras / "tinylora-te.safetensors", seed=2, text_encoder=True)
    save_tiny_lora(sd15, loras / "tinylora-te-kohya.safetensors", seed=2, text_encoder=True, layout="kohya")
    save_tiny_lora(sdxl, loras / "tinylora-xl.safetensors", seed=4, text_encoder=True)
    save_tiny_lora(sdxl, loras / "tinylora-xl-kohya.safetensors", seed=4, text_encoder=True, layout="kohya")
    save_tiny_vae(root / "models" / "vae" / "tinyvae")
    upscaler = save_tiny_esrgan(root / "models" / "upscalers" / "tiny2x.safetensors", scale=2)
    flux = tiny_flux_pipeline(root / "tokflux")
    flux_folder = save_pipeline(flux, checkpoints / "tinyflux")
    flux_single = save_flux_single_file(flux, singles / "tinyflux-single.safetensors")
    return TinyModels(root / "home", root / "models", sd15_folder, sd15_single, sdxl_folder, sdxl_single, lora,
                      controlnet, controlnet_sdxl, upscaler, flux_folder, flux_single)


def _make_settings(tiny: TinyModels, tmp_path: Path, **overrides: object):  # -> Settings
    from brushwork.config import ModelSource, Settings

    models = {
        "tiny-single": ModelSource(source=str(tiny.sd15_single), family="sd15", config=str(tiny.sd15_folder)),
        "tiny-sdxl-single": ModelSource(source=str(tiny.sdxl_single), family="sdxl", config=str(tiny.sdxl_folder)),
    }
    if tiny.flux_single is not None:
        models["tinyflux-single"] = ModelSource(source=str(tiny.flux_single), family="flux",
                                                config=str(tiny.flux_folder))
    values: dict[str, object] = {
        "home": tiny.home,  # shared: the demo model and hash cache are built once per session
        "models_dir": tiny.models_dir,
        "styles_dir": tmp_path / "styles",
        "output_dir": tmp_path / "out",
        "models": models,
    }
    values.update(overrides)
    return Settings.load(**values)


@pytest.fixture
def make_settings(tiny_models: TinyModels, tmp_path: Path):
    """Settings over the tiny models with per-test output/styles folders; kwargs override."""
    return lambda **overrides: _make_settings(tiny_models, tmp_path, **overrides)


@pytest.fixture
def settings(make_settings):
    return make_settings()


@pytest.fixture(scope="session")
def shared_api(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory):
    """One warm Brushwork for tests that don't count loads (saves reloading per test)."""
    from brushwork.facade import Brushwork

    return Brushwork(_make_settings(tiny_models, tmp_path_factory.mktemp("shared")))


@pytest.fixture
def api(settings):
    """A fresh Brushwork (cold cache) for tests that count loads or change settings."""
    from brushwork.facade import Brushwork

    return Brushwork(settings)

