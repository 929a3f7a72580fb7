"""LoRA and VAE files that cannot serve: one line naming the adapter and its file; the pipeline stays clean."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from brushwork.engine.adapters import adapter_path, load_checked_vae, load_lora
from brushwork.errors import ModelUnavailable
from brushwork.plan import AdapterRef


@pytest.fixture(scope="module")
def sd15_pipe(tiny_models):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(tiny_models.sd15_folder), local_files_only=True)


@pytest.fixture(scope="module")
def sdxl_pipe(tiny_models):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(str(tiny_models.sdxl_folder), local_files_only=True)


def _lora_params(pipe) -> list[str]:
    return [name for name, _ in pipe.unet.named_parameters() if "lora" in name]


def _refused(pipe, name: str, path: Path) -> str:
    with pytest.raises(ModelUnavailable) as info:
        load_lora(pipe, name, path, f"{name}_test")
    message = str(info.value)
    assert message.startswith(f"LoRA {name!r} ({path.name}): ") and "\n" not in message
    assert not _lora_params(pipe), "a failed load left adapter layers behind"
    return message


def test_random_bytes_named_safetensors(sd15_pipe, tmp_path: Path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(bytes(range(256)) * 8)
    assert "not a readable .safetensors file" in _refused(sd15_pipe, "junk", path)


def test_a_safetensors_file_that_is_no_lora(sd15_pipe, tiny_models, tmp_path: Path):
    path = tmp_path / "vae.safetensors"
    save_file({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    assert "holds no LoRA weights (its tensors are named like encoder.conv_in.weight)" in \
        _refused(sd15_pipe, "vae", path)
    empty = tmp_path / "empty.safetensors"
    save_file({}, str(empty))
    assert "holds no tensors" in _refused(sd15_pipe, "empty", empty)


def test_a_lora_for_layers_this_model_does_not_have(sd15_pipe, tmp_path: Path):
    path = tmp_path / "other.safetensors"
    save_file({"unet.no.such.layer.lora_A.weight": torch.zeros(4, 8),
               "unet.no.such.layer.lora_B.weight": torch.zeros(8, 4)}, str(path))
    assert "none of its weights match a layer of this model" in _refused(sd15_pipe, "other", path)


def test_a_lora_whose_shapes_do_not_fit(sdxl_pipe, tiny_models, capfd):
    message = _refused(sdxl_pipe, "tinylora", tiny_models.lora)  # made for the SD 1.5 model
    assert "its tensor shapes do not fit this model" in message
    assert "size mismatch" not in capfd.readouterr().err  # diffusers' own multi-line log is kept quiet


def test_a_pickle_lora_with_python_objects(sd15_pipe, tmp_path: Path):
    path = tmp_path / "objects.pt"
    torch.save({"unet.x.lora_A.weight": torch.zeros(1), "hook": _Hook()}, path)
    assert _refused(sd15_pipe, "objects", path).endswith(
        "contains Python objects that weights_only loading refuses; convert it to .safetensors")


class _Hook:
    pass


def test_a_good_lora_loads_after_failures(sd15_pipe, tiny_models, tmp_path: Path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ModelUnavailable):
        load_lora(sd15_pipe, "junk", junk, "junk_1")
    load_lora(sd15_pipe, "tinylora", tiny_models.lora, "tinylora_1")
    try:
        assert _lora_params(sd15_pipe)
    finally:
        sd15_pipe.delete_adapters(["tinylora_1"])


# ---------------------------------------------------------------- VAE


def _vae_refused(path: Path, home: Path) -> str:
    with pytest.raises(ModelUnavailable) as info:
        load_checked_vae("myvae", path, "sd15", home, torch.float32)
    message = str(info.value)
    assert message.startswith(f"VAE 'myvae' ({path.name}): ") and "\n" not in message
    return message


def test_bad_vae_files_and_folders(tiny_models, tmp_path: Path):
    (tmp_path / "empty-folder").mkdir()
    assert "has no config.json" in _vae_refused(tmp_path / "empty-folder", tmp_path)
    unet = tmp_path / "unet-folder"
    unet.mkdir()
    (unet / "config.json").write_text('{"_class_name": "UNet2DConditionModel"}')
    assert "describes 'UNet2DConditionModel', not an AutoencoderKL VAE" in _vae_refused(unet, tmp_path)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(bytes(range(256)) * 8)
    assert "not a readable .safetensors file" in _vae_refused(junk, tmp_path)
    lora = _vae_refused(tiny_models.lora, tmp_path)
    assert "holds no VAE weights" in lora
    # The tiny checkpoint's VAE is 8..16 wide; SD 1.5's VAE config says 128..512.
    assert "VAE widths per level 8/16/16/16 does not match 128/256/512/512" in \
        _vae_refused(tiny_models.sd15_single, tmp_path)


def test_a_vae_folder_with_broken_weights(tiny_models, tmp_path: Path):
    import shutil

    folder = tmp_path / "vae"
    shutil.copytree(tiny_models.models_dir / "vae" / "tinyvae", folder)
    for weights in folder.glob("*.safetensors"):
        weights.write_bytes(b"\0" * 100)
    assert "not a readable .safetensors file" in _vae_refused(folder, tmp_path)


def test_a_good_vae_loads(tiny_models, tmp_path: Path):
    vae = load_checked_vae("tinyvae", tiny_models.models_dir / "vae" / "tinyvae", "sd15", tmp_path, torch.float32)
    assert vae.config.latent_channels == 4


# ---------------------------------------------------------------- hashes pinned by the plan


def test_a_changed_adapter_shows_both_hashes(make_settings):
    from brushwork.models.catalog import ModelCatalog

    catalog = ModelCatalog(make_settings())
    ref = AdapterRef(name="tinylora", sha256="a" * 64, short_hash="a" * 12)
    with pytest.raises(ModelUnavailable) as info:
        adapter_path(catalog, "lora", ref)
    file_sha = catalog.sha256(catalog.adapter("lora", "tinylora"))
    message = str(info.value)
    assert f"plan sha256 {'a' * 12}" in message and f"file sha256 {file_sha[:12]}" in message
    assert "tinylora.safetensors" in message


# ---------------------------------------------------------------- through the engine


def test_a_bad_lora_in_a_plan_fails_the_run_and_leaves_the_cached_pipeline_clean(make_settings, tiny_models,
                                                                                  tmp_path: Path):
    from brushwork.facade import Brushwork
    from brushwork.styles.recipe import LoraRef, Recipe
    from brushwork.styles.registry import StyleRegistry
    from brushwork.styles.spec import StyleSpec

    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    (models / "checkpoints").symlink_to(tiny_models.models_dir / "checkpoints")
    state = load_file(str(tiny_models.lora))
    misfit = {key: value[:, :1].contiguous() if value.ndim == 2 and value.shape[1] > 4 else value
              for key, value in state.items()}  # LoRA layout, wrong widths
    save_file(misfit, str(models / "loras" / "misfit.safetensors"))

    def registry(loras: tuple[LoraRef, ...]) -> StyleRegistry:
        return StyleRegistry([StyleSpec(name="general", build=lambda prompt, **_: Recipe(
            model="tiny-sd15", prompt=prompt, loras=loras))])

    settings = make_settings(models_dir=models)
    fast = {"steps": 2, "width": 64, "height": 64, "seed": 3}
    api = Brushwork(settings)
    before = api.run(Brushwork(settings, styles=registry(())).plan("a lamp", **fast))
    plan = Brushwork(settings, styles=registry((LoraRef(name="misfit", weight=1.0),))).plan("a lamp", **fast)
    assert [ref.name for ref in plan.loras] == ["misfit"]
    with pytest.raises(ModelUnavailable, match=r"^LoRA 'misfit' \(misfit.safetensors\): its tensor shapes"):
        api.run(plan)
    after = api.run(Brushwork(settings, styles=registry(())).plan("a lamp", **fast))
    assert np.array_equal(np.asarray(before.images[0]), np.asarray(after.images[0]))
