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


def test_edit_unet_is_named_not_a_size_mismatch(tiny_models, tmp_path: Path):
    key = "model.diffusion_model.input_blocks.0.0.weight"

    def eight_channels(state):
        weight = state[key]
        state[key] = torch.zeros(weight.shape[0], 8, *weight.shape[2:])

    path = _edited(tiny_models.sd15_single, tmp_path / "pix2pix.safetensors", eight_channels)
    with pytest.raises(ModelUnavailable, match="instruct-pix2pix UNet \\(8 input channels"):
        family_of(path)


def test_checkpoint_without_vae_says_so(tiny_models, tmp_path: Path):
    def drop_vae(state):
        for key in [k for k in state if k.startswith("first_stage_model.")]:
            del state[key]

    path = _edited(tiny_models.sd15_single, tmp_path / "novae.safetensors", drop_vae)
    with pytest.raises(ModelUnavailable, match="no weights for vae"):
        family_of(path)


# ---------------------------------------------------------------- shapes against the config that will be used


def test_a_checkpoint_is_checked_against_the_standard_config(tiny_models):
    from brushwork.models.loading import check_shapes

    with pytest.raises(ModelUnavailable) as info:
        check_shapes(tiny_models.sd15_single)  # tiny widths; SD 1.5's shipped config is full size
    message = str(info.value)
    assert message.startswith("tiny-sd15-single.safetensors: text encoder width 32 does not match 768 "
                              "in SD 1.5's standard config")
    assert "also mismatched: UNet, VAE" in message and "\n" not in message


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_checkpoint_passes_with_its_own_config_folder(tiny_models, family: str):
    from brushwork.models.loading import check_shapes

    single = tiny_models.sd15_single if family == "sd15" else tiny_models.sdxl_single
    folder = tiny_models.sd15_folder if family == "sd15" else tiny_models.sdxl_folder
    check_shapes(single, folder)
    check_shapes(folder)  # a diffusers folder carries its own configs


def test_a_config_folder_of_another_family_is_named(tiny_models):
    from brushwork.models.loading import check_shapes

    with pytest.raises(ModelUnavailable, match="holds an SD 1.5 model but the config folder .* describes SDXL"):
        check_shapes(tiny_models.sd15_single, tiny_models.sdxl_folder)


def test_load_pipeline_refuses_before_diffusers_sees_the_file(tiny_models, tmp_path: Path, monkeypatch):
    import diffusers

    from brushwork.models.loading import load_pipeline

    def never(*args, **kwargs):
        raise AssertionError("diffusers was asked to load a file that cannot fit")

    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_single_file", never)
    with pytest.raises(ModelUnavailable, match="text encoder width 32 does not match 768"):
        load_pipeline(tiny_models.sd15_single, "sd15", home=tmp_path, torch_dtype=torch.float32)


def test_a_matching_config_still_loads(tiny_models, tmp_path: Path):
    from brushwork.models.loading import load_pipeline

    pipe = load_pipeline(tiny_models.sd15_single, "sd15", home=tmp_path, torch_dtype=torch.float32,
                         config=tiny_models.sd15_folder)
    assert pipe.text_encoder.config.hidden_size == 32


# ---------------------------------------------------------------- pickles (BRUSHWORK_ALLOW_PICKLE=1)


class _NotATensor:
    pass


def test_a_pickle_with_python_objects_is_one_line(tiny_models, tmp_path: Path):
    path = tmp_path / "x.ckpt"
    torch.save({"state_dict": {"a": torch.zeros(1)}, "extra": _NotATensor()}, path)
    with pytest.raises(ModelUnavailable) as info:
        family_of(path)
    assert str(info.value) == ("x.ckpt: contains Python objects that weights_only loading refuses; "
                               "convert it to .safetensors")


def test_a_damaged_pickle_is_one_line(tmp_path: Path):
    path = tmp_path / "junk.ckpt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelUnavailable) as info:
        family_of(path)
    assert str(info.value) == "junk.ckpt: not a readable PyTorch checkpoint (damaged, or not a weights file)"


def test_random_bytes_named_safetensors_are_one_line(tmp_path: Path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ModelUnavailable) as info:
        family_of(path)
    assert str(info.value).startswith("junk.safetensors: not a readable .safetensors file (")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- text encoder depth (clip skip bound)


def test_text_encoder_layers_of_every_layout(tiny_models, tmp_path: Path):
    import subprocess
    import sys

    from brushwork.models.inspect import text_encoder_layers

    assert text_encoder_layers(tiny_models.sd15_folder, "sd15") == 5
    assert text_encoder_layers(tiny_models.sd15_single, "sd15") == 5
    assert text_encoder_layers(tiny_models.sdxl_folder, "sdxl") == 5
    assert text_encoder_layers(tiny_models.sdxl_single, "sdxl") == 5

    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": load_file(str(tiny_models.sd15_single))}, ckpt)
    assert text_encoder_layers(ckpt, "sd15") == 5

    def three_layers(state):
        for key in [k for k in state if ".encoder.layers." in k and int(k.split(".encoder.layers.")[1][0]) >= 3]:
            del state[key]

    assert text_encoder_layers(_edited(tiny_models.sd15_single, tmp_path / "3.safetensors", three_layers),
                               "sd15") == 3

    code = ("import sys; from pathlib import Path; from brushwork.models.inspect import text_encoder_layers; "
            f"n = text_encoder_layers(Path({str(tiny_models.sd15_single)!r}), 'sd15'); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(n)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "5", done.stderr


def test_text_encoder_layers_says_when_it_cannot_tell(tiny_models, tmp_path: Path):
    from brushwork.models.inspect import text_encoder_layers

    def drop_text_encoder(state):
        for key in [k for k in state if k.startswith("cond_stage_model.")]:
            del state[key]

    path = _edited(tiny_models.sd15_single, tmp_path / "notext.safetensors", drop_text_encoder)
    with pytest.raises(ModelUnavailable, match="notext.safetensors: has no text encoder layers"):
        text_encoder_layers(path, "sd15")
    (tmp_path / "folder").mkdir()
    with pytest.raises(ModelUnavailable, match="cannot read the text encoder's config"):
        text_encoder_layers(tmp_path / "folder", "sd15")


def test_a_checkpoint_header_is_read_once_per_file_version(tiny_models, tmp_path, monkeypatch):
    import shutil

    from brushwork.models import loading

    copy = shutil.copy(tiny_models.sd15_single, tmp_path / "copy.safetensors")
    reads: list[str] = []
    real = loading.read_checkpoint_shapes
    monkeypatch.setattr(loading, "read_checkpoint_shapes", lambda path: reads.append(str(path)) or real(path))
    first = loading.checkpoint_shapes(copy)
    assert loading.checkpoint_shapes(copy) == first and len(reads) == 1  # family, shape check, clip skip: one read
    first.clear()  # callers get their own copy
    assert loading.checkpoint_shapes(copy)
    import os

    os.utime(copy, ns=(1, 1))  # a changed file is read again
    loading.checkpoint_shapes(copy)
    assert len(reads) == 2
