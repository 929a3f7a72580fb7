"""Dedicated inpainting checkpoints (9-channel UNet): recognised, checked and loaded offline."""

from __future__ import annotations

import json
import types
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from brushwork.errors import ModelUnavailable
from brushwork.models import offline_configs as oc
from brushwork.models.loading import (
    check_shapes,
    family_and_variant,
    family_of,
    load_pipeline,
    model_variant,
)
from brushwork.testing.factories import (
    save_pipeline,
    save_single_file,
    tiny_sd15_inpaint_pipeline,
    tiny_sdxl_inpaint_pipeline,
)

KEY_UNET_IN = "model.diffusion_model.input_blocks.0.0.weight"


@dataclass(frozen=True)
class Inpainters:
    root: Path
    sd15_folder: Path
    sd15_single: Path
    sdxl_folder: Path
    sdxl_single: Path


@pytest.fixture(scope="module")
def inpainters(tmp_path_factory: pytest.TempPathFactory) -> Inpainters:
    root = tmp_path_factory.mktemp("inpaint")
    sd15 = tiny_sd15_inpaint_pipeline(root / "tok15")
    sdxl = tiny_sdxl_inpaint_pipeline(root / "tokxl")
    return Inpainters(
        root,
        save_pipeline(sd15, root / "checkpoints" / "tiny-sd15-inpaint"),
        save_single_file(sd15, root / "singles" / "tiny-sd15-inpaint.safetensors"),
        save_pipeline(sdxl, root / "checkpoints" / "tiny-sdxl-inpaint"),
        save_single_file(sdxl, root / "singles" / "tiny-sdxl-inpaint.safetensors"),
    )


def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers.loaders import single_file

    def refuse(*args, **kwargs):
        raise AssertionError(f"Hub access attempted: {args} {kwargs}")

    monkeypatch.setattr(single_file, "snapshot_download", refuse)


# ---------------------------------------------------------------- detection


def test_tiny_inpaint_pipeline_has_a_nine_channel_unet(inpainters: Inpainters) -> None:
    from diffusers import StableDiffusionInpaintPipeline

    pipe = tiny_sd15_inpaint_pipeline(inpainters.root / "tok")
    assert type(pipe) is StableDiffusionInpaintPipeline and pipe.unet.config.in_channels == 9
    assert load_file(str(inpainters.sd15_single))[KEY_UNET_IN].shape[1] == 9
    assert json.loads((inpainters.sd15_folder / "unet/config.json").read_text())["in_channels"] == 9


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
@pytest.mark.parametrize("layout", ["folder", "single"])
def test_inpainting_models_are_detected(inpainters: Inpainters, family: str, layout: str) -> None:
    path = getattr(inpainters, f"{family}_{layout}")
    assert family_and_variant(path) == (family, "inpaint")
    assert family_of(path) == family and family_of(path, family) == family  # type: ignore[arg-type]
    assert model_variant(path) == "inpaint" and model_variant(path, family) == "inpaint"  # type: ignore[arg-type]
    if layout == "single":
        shapes = oc.read_checkpoint_shapes(path)
        assert oc.detect_family(shapes) == family and oc.detect_variant(shapes) == "inpaint"


def test_base_models_are_detected_as_base(tiny_models) -> None:
    for family in ("sd15", "sdxl"):
        for layout in ("folder", "single"):
            path = getattr(tiny_models, f"{family}_{layout}")
            assert family_and_variant(path) == (family, "base")
            assert model_variant(path) == "base"


def test_declared_family_must_still_match(inpainters: Inpainters) -> None:
    with pytest.raises(ModelUnavailable, match="holds an sd15 model, but its catalog entry says sdxl"):
        model_variant(inpainters.sd15_single, "sdxl")


def test_an_eight_channel_unet_is_still_refused_by_name(inpainters: Inpainters, tmp_path: Path) -> None:
    state = load_file(str(inpainters.sd15_single))
    state[KEY_UNET_IN] = state[KEY_UNET_IN][:, :8].contiguous()
    path = tmp_path / "pix2pix.safetensors"
    save_file(state, str(path))
    for probe in (family_of, model_variant, family_and_variant):
        with pytest.raises(ModelUnavailable, match=r"^pix2pix.safetensors: unsupported checkpoint layout: "
                                                   r"SD 1.x instruct-pix2pix UNet \(8 input channels"):
            probe(path)

    folder = tmp_path / "pix2pix-folder"
    for source in inpainters.sd15_folder.rglob("*.json"):  # configs are all the folder check reads
        target = folder / source.relative_to(inpainters.sd15_folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source.read_text())
    config = folder / "unet/config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "in_channels": 8}))
    with pytest.raises(ModelUnavailable, match=r"instruct-pix2pix UNet \(8 input channels"):
        family_of(folder)


def test_inpaint_pipeline_classes_name_their_family(inpainters: Inpainters) -> None:
    assert oc.family_of_pipeline_config(inpainters.sd15_folder) == "sd15"
    assert oc.family_of_pipeline_config(inpainters.sdxl_folder) == "sdxl"
    assert oc.PIPELINE_CLASSES[("sd15", "inpaint")] == "StableDiffusionInpaintPipeline"
    assert oc.PIPELINE_CLASSES[("sdxl", "inpaint")] == "StableDiffusionXLInpaintPipeline"


# ---------------------------------------------------------------- the patched standard config


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_materialized_inpaint_config_is_the_base_one_with_nine_channels(family: str, tmp_path: Path) -> None:
    base = oc.materialize_config_dir(family, tmp_path)  # type: ignore[arg-type]
    inpaint = oc.materialize_config_dir(family, tmp_path, "inpaint")  # type: ignore[arg-type]
    assert inpaint == tmp_path / "configs" / f"{family}-inpaint" and base == tmp_path / "configs" / family
    assert oc.materialize_config_dir(family, tmp_path, "inpaint") == inpaint  # type: ignore[arg-type]  # reused
    unet_base = json.loads((base / "unet/config.json").read_text())
    unet_inpaint = json.loads((inpaint / "unet/config.json").read_text())
    assert unet_base["in_channels"] == 4 and unet_inpaint == {**unet_base, "in_channels": 9}
    index = json.loads((inpaint / "model_index.json").read_text())
    assert index["_class_name"] == oc.PIPELINE_CLASSES[(family, "inpaint")]  # type: ignore[index]
    assert oc.family_of_pipeline_config(inpaint) == family
    for sub in ("vae", "text_encoder", "scheduler"):
        name = "scheduler_config.json" if sub == "scheduler" else "config.json"
        assert (inpaint / sub / name).read_bytes() == (base / sub / name).read_bytes()
    assert (inpaint / "tokenizer/vocab.json").read_bytes() == (base / "tokenizer/vocab.json").read_bytes()
    # The shipped base folder is untouched.
    assert json.loads((oc.shipped_config_dir(family) / "unet/config.json").read_text())["in_channels"] == 4  # type: ignore[arg-type]


def test_a_stale_inpaint_config_folder_is_rebuilt(tmp_path: Path) -> None:
    inpaint = oc.materialize_config_dir("sd15", tmp_path, "inpaint")
    (inpaint / "unet/config.json").write_text(json.dumps({"in_channels": 4}))
    (inpaint / ".brushwork-config-stamp").write_text("old\n")
    again = oc.materialize_config_dir("sd15", tmp_path, "inpaint")
    assert json.loads((again / "unet/config.json").read_text())["in_channels"] == 9


def _full_size_inpaint_shapes(config_dir: Path) -> dict[str, tuple[int, ...]]:
    """A full-size SD 1.5 inpainting checkpoint's key names and shapes, built on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from brushwork.testing.ldm_export import pipeline_to_ldm_state_dict

    with init_empty_weights():
        parts = types.SimpleNamespace(
            unet=UNet2DConditionModel.from_config(json.loads((config_dir / "unet/config.json").read_text())),
            vae=AutoencoderKL.from_config(json.loads((config_dir / "vae/config.json").read_text())),
            text_encoder=CLIPTextModel(CLIPTextConfig.from_pretrained(config_dir / "text_encoder")),
            text_encoder_2=None,
        )
    return {key: tuple(value.shape) for key, value in pipeline_to_ldm_state_dict(parts).items()}


def test_full_size_sd15_inpainting_layout_fits_the_patched_standard_config(tmp_path: Path) -> None:
    config_dir = oc.materialize_config_dir("sd15", tmp_path, "inpaint")
    shapes = _full_size_inpaint_shapes(config_dir)
    assert shapes[KEY_UNET_IN] == (320, 9, 3, 3)  # sd-v1-5-inpainting's input convolution
    assert oc.detect_family(shapes) == "sd15" and oc.detect_variant(shapes) == "inpaint"
    assert oc.missing_components(shapes, "sd15") == []
    oc.check_against_config(shapes, config_dir, "sd15")  # the materialised folder, as loading uses it
    oc.check_against_config(shapes, None, "sd15", "inpaint")  # the shipped JSON, patched in memory
    oc.check_against_config(shapes, oc.shipped_config_dir("sd15"), "sd15", "inpaint")
    with pytest.raises(ValueError, match=r"^UNet input channels 9 does not match 4 in SD 1.5's standard config"):
        oc.check_against_config(shapes, None, "sd15")  # the base config does not fit an inpainting UNet
    with pytest.raises(ValueError, match=r"^UNet input channels 4 does not match 9 in SD 1.5 inpainting's standard"):
        oc.check_against_config({**shapes, KEY_UNET_IN: (320, 4, 3, 3)}, None, "sd15", "inpaint")


def test_tiny_single_is_checked_against_the_inpainting_standard_config(inpainters: Inpainters) -> None:
    with pytest.raises(ModelUnavailable, match=r"^tiny-sd15-inpaint.safetensors: text encoder width 32 does not "
                                               r"match 768 in SD 1.5 inpainting's standard config"):
        check_shapes(inpainters.sd15_single)  # tiny widths: the full-size standard config cannot hold them
    check_shapes(inpainters.sd15_single, inpainters.sd15_folder)


# ---------------------------------------------------------------- loading and running


def _inpaint(pipe) -> np.ndarray:
    from PIL import Image

    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    mask = np.zeros((64, 64), dtype=np.uint8)
    mask[16:48, 16:48] = 255
    return pipe(
        prompt="a red door", image=image, mask_image=Image.fromarray(mask), height=64, width=64,
        num_inference_steps=2, generator=torch.Generator("cpu").manual_seed(7), output_type="np",
    ).images[0]


def test_load_inpaint_folder_and_single_file_give_the_same_pixels(inpainters: Inpainters, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionInpaintPipeline

    _no_hub(monkeypatch)
    folder = load_pipeline(inpainters.sd15_folder, "sd15", home=tmp_path, torch_dtype=torch.float32,
                           variant="inpaint")
    single = load_pipeline(inpainters.sd15_single, "sd15", home=tmp_path, torch_dtype=torch.float32,
                           config=inpainters.sd15_folder, variant="inpaint")
    for pipe in (folder, single):
        assert type(pipe) is StableDiffusionInpaintPipeline
        assert pipe.unet.config.in_channels == 9 and pipe.safety_checker is None
        pipe.set_progress_bar_config(disable=True)
    first = _inpaint(folder)
    assert first.shape == (64, 64, 3)
    np.testing.assert_array_equal(first, _inpaint(folder))  # deterministic
    np.testing.assert_allclose(_inpaint(single), first, atol=1e-5)


def test_load_sdxl_inpaint_single_file(inpainters: Inpainters, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionXLInpaintPipeline

    _no_hub(monkeypatch)
    pipe = load_pipeline(inpainters.sdxl_single, "sdxl", home=tmp_path, torch_dtype=torch.float32,
                         config=inpainters.sdxl_folder, variant="inpaint")
    assert type(pipe) is StableDiffusionXLInpaintPipeline and pipe.unet.config.in_channels == 9
    assert pipe.watermark is None


def test_a_single_file_without_config_uses_the_patched_standard_config(inpainters: Inpainters, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """No `config`: the shapes are checked against (and loading would use) `<home>/configs/sd15-inpaint`."""
    import diffusers

    seen: dict[str, str] = {}

    def record(path, config, **kwargs):
        seen["config"] = config
        return "loaded"

    monkeypatch.setattr(diffusers.StableDiffusionInpaintPipeline, "from_single_file", record)
    monkeypatch.setattr("brushwork.models.loading._check_single", lambda path, config: ("sd15", "inpaint"))
    assert load_pipeline(inpainters.sd15_single, "sd15", home=tmp_path, torch_dtype=torch.float32,
                         variant="inpaint") == "loaded"
    assert Path(seen["config"]) == tmp_path / "configs" / "sd15-inpaint"
    assert json.loads((tmp_path / "configs/sd15-inpaint/unet/config.json").read_text())["in_channels"] == 9


def test_the_variant_must_be_the_one_the_files_hold(inpainters: Inpainters, tiny_models, tmp_path: Path) -> None:
    with pytest.raises(ModelUnavailable, match="holds an SD 1.5 inpainting model, not the SD 1.5 text-to-image"):
        load_pipeline(inpainters.sd15_single, "sd15", home=tmp_path, torch_dtype=torch.float32,
                      config=inpainters.sd15_folder)
    with pytest.raises(ModelUnavailable, match="holds an SD 1.5 inpainting model, not the SD 1.5 text-to-image"):
        load_pipeline(inpainters.sd15_folder, "sd15", home=tmp_path, torch_dtype=torch.float32)
    with pytest.raises(ModelUnavailable, match="holds an SDXL text-to-image model, not the SDXL inpainting"):
        load_pipeline(tiny_models.sdxl_folder, "sdxl", home=tmp_path, torch_dtype=torch.float32, variant="inpaint")
