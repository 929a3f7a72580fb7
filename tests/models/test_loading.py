"""Checkpoint checks before any weights load: layout, completeness, declared family."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from brushwork.errors import ModelUnavailable
from brushwork.models.loading import family_of


def _edited(source: Path, target: Path, edit) -> Path:
    state = load_file(str(source))
    edit(state)
    save_file(state, str(target))
    return target


def test_families_of_every_layout(tiny_models):
    assert family_of(tiny_models.sd15_single) == "sd15"
    assert family_of(tiny_models.sdxl_single) == "sdxl"
    assert family_of(tiny_models.sd15_folder) == "sd15"
    assert family_of(tiny_models.sdxl_folder) == "sdxl"


def test_declared_family_must_match(tiny_models):
    with pytest.raises(ModelUnavailable, match="holds an sd15 model, but its catalog entry says sdxl"):
        family_of(tiny_models.sd15_single, "sdxl")


def test_inpainting_unet_is_named_not_a_size_mismatch(tiny_models, tmp_path: Path):
    key = "model.diffusion_model.input_blocks.0.0.weight"

    def nine_channels(state):
        weight = state[key]
        state[key] = torch.zeros(weight.shape[0], 9, *weight.shape[2:])

    path = _edited(tiny_models.sd15_single, tmp_path / "inpaint.safetensors", nine_channels)
    with pytest.raises(ModelUnavailable, match="(?i)inpaint"):
        family_of(path)


def test_checkpoint_without_vae_says_so(tiny_models, tmp_path: Path):
    def drop_vae(state):
        for key in [k for k in state if k.startswith("first_stage_model.")]:
            del state[key]

    path = _edited(tiny_models.sd15_single, tmp_path / "novae.safetensors", drop_vae)
    with pytest.raises(ModelUnavailable, match="no weights for vae"):
        family_of(path)
