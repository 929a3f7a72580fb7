"""ControlNets: tiny test models, offline loading (folder and single file), up-front checks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from brushwork.errors import InvalidRequest, ModelUnavailable
from brushwork.models.controlnet import (
    check_compatible,
    controlnet_config_from_shapes,
    controlnet_family,
    inspect_controlnet,
    load_controlnet,
    to_diffusers_names,
)
from brushwork.testing.controlnets import (
    controlnet_to_ldm,
    save_controlnet,
    save_controlnet_single_file,
    tiny_controlnet,
)
from brushwork.testing.factories import tiny_sd15_pipeline, tiny_sdxl_pipeline

FAMILIES = ("sd15", "sdxl")
# What decides the architecture; a single file's derived config must agree with the saved one.
ARCH_KEYS = (
    "in_channels", "conditioning_channels", "conditioning_embedding_out_channels", "block_out_channels",
    "down_block_types", "mid_block_type", "layers_per_block", "transformer_layers_per_block",
    "cross_attention_dim", "attention_head_dim", "use_linear_projection", "addition_embed_type",
    "addition_time_embed_dim", "projection_class_embeddings_input_dim", "norm_num_groups",
)


@dataclass
class Tiny:
    pipe: Any
    controlnet: Any
    folder: Path
    ldm_file: Path
    diffusers_file: Path
    bare_ldm_file: Path  # LDM layout without the `control_model.` prefix, as some re-uploads have it


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tiny]:
    root = tmp_path_factory.mktemp("controlnet")
    out = {}
    for family, make in (("sd15", tiny_sd15_pipeline), ("sdxl", tiny_sdxl_pipeline)):
        pipe = make(root / f"tok-{family}")
        pipe.set_progress_bar_config(disable=True)
        cn = tiny_controlnet(pipe)
        controlnets = root / "models" / "controlnet"
        out[family] = Tiny(
            pipe, cn,
            save_controlnet(cn, controlnets / f"tiny-{family}"),
            save_controlnet_single_file(cn, controlnets / f"tiny-{family}-ldm.safetensors"),
            save_controlnet_single_file(cn, controlnets / f"tiny-{family}-diffusers.safetensors", layout="diffusers"),
            controlnets / f"tiny-{family}-bare.safetensors",
        )
        save_file({k.removeprefix("control_model."): v.contiguous() for k, v in controlnet_to_ldm(cn).items()},
                  str(out[family].bare_ldm_file))
    return out


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test (on top of HF_HUB_OFFLINE=1)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _norm(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


def _arch(config: Any, n_blocks: int) -> dict[str, Any]:
    """Architecture fields with ints spread per block, so 8 and [8, 8] compare equal."""
    out = {}
    for key in ARCH_KEYS:
        value = _norm(config.get(key))
        if key in ("attention_head_dim", "transformer_layers_per_block") and isinstance(value, int):
            value = [value] * n_blocks
        out[key] = value
    return out


def _same_weights(a: Any, b: Any) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _forward(controlnet: Any, family: str) -> torch.Tensor:
    """Sum of a ControlNet's residuals for fixed inputs (attention head counts change this)."""
    g = torch.Generator().manual_seed(3)
    cross = controlnet.config.cross_attention_dim
    kwargs: dict[str, Any] = {}
    if family == "sdxl":
        pooled = controlnet.config.projection_class_embeddings_input_dim - 6 * controlnet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, pooled, generator=g),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    with torch.no_grad():
        down, mid = controlnet(
            torch.randn(1, 4, 8, 8, generator=g), 500, torch.randn(1, 7, cross, generator=g),
            torch.rand(1, 3, 64, 64, generator=g), return_dict=False, **kwargs,
        )
    return torch.cat([t.flatten() for t in (*down, mid)])


# -- the tiny models ------------------------------------------------------------------


def test_tiny_controlnet_is_deterministic_and_its_zero_convs_are_live(tiny):
    pipe = tiny["sd15"].pipe
    state = torch.get_rng_state()
    again = tiny_controlnet(pipe)
    assert torch.equal(torch.get_rng_state(), state)  # the caller's RNG is untouched
    _same_weights(again, tiny["sd15"].controlnet)
    other = tiny_controlnet(pipe, seed=1)
    assert not torch.equal(other.controlnet_mid_block.weight, again.controlnet_mid_block.weight)
    for conv in (*again.controlnet_down_blocks, again.controlnet_mid_block, again.controlnet_cond_embedding.conv_out):
        assert conv.weight.abs().sum() > 0


def test_ldm_export_is_the_inverse_of_diffusers_converter(tiny):
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    cn = tiny["sd15"].controlnet
    converted = convert_controlnet_checkpoint(controlnet_to_ldm(cn), dict(cn.config))
    original = cn.state_dict()
    assert converted.keys() == original.keys()
    assert all(torch.equal(converted[k], original[k]) for k in original)
    assert to_diffusers_names(controlnet_to_ldm(cn)).keys() == original.keys()


# -- recognising ----------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_family_of_folder_and_single_files(tiny, family):
    t = tiny[family]
    assert controlnet_family(t.folder) == family
    assert controlnet_family(t.ldm_file) == family
    assert controlnet_family(t.diffusers_file) == family
    assert inspect_controlnet(t.ldm_file).layout == "ldm-file"
    assert inspect_controlnet(t.diffusers_file).layout == "diffusers-file"


@pytest.mark.parametrize("family", FAMILIES)
def test_full_size_config_is_derived_from_shapes(family):
    """A full-size SD 1.5 (LDM layout) / SDXL (diffusers keys) ControlNet, on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import ControlNetModel

    from brushwork.models.offline_configs import shipped_config_dir

    unet = json.loads((shipped_config_dir(family) / "unet" / "config.json").read_text())
    with init_empty_weights():
        model = ControlNetModel(**{k: unet[k] for k in ARCH_KEYS if k in unet})
    if family == "sd15":
        shapes = to_diffusers_names({k: tuple(v.shape) for k, v in controlnet_to_ldm(model).items()})
    else:
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found, config = controlnet_config_from_shapes(shapes)
    assert found == family
    n = len(unet["block_out_channels"])
    assert _arch(config, n) == _arch(dict(model.config), n)
    assert config["cross_attention_dim"] == {"sd15": 768, "sdxl": 2048}[family]


# -- loading --------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_folder_round_trip_gives_identical_weights(tiny, tmp_path, family, no_network):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    loaded = load_controlnet(tiny[family].folder, family, torch_dtype=torch.float32, home=tmp_path)
    _same_weights(loaded, tiny[family].controlnet)


@pytest.mark.parametrize("layout", ["ldm_file", "diffusers_file", "bare_ldm_file"])
@pytest.mark.parametrize("family", FAMILIES)
def test_single_file_loads_the_same_model_as_the_folder(tiny, tmp_path, family, layout, no_network):
    t = tiny[family]
    folder = load_controlnet(t.folder, family, torch_dtype=torch.float32, home=tmp_path)
    single = load_controlnet(getattr(t, layout), family, torch_dtype=torch.float32, home=tmp_path)
    _same_weights(single, folder)
    n = len(folder.config.block_out_channels)
    assert _arch(dict(single.config), n) == _arch(dict(folder.config), n)
    # same outputs (to float rounding): head counts, which shapes do not show, match too
    torch.testing.assert_close(_forward(single, family), _forward(folder, family), rtol=0, atol=1e-5)
    # the derived config lives under home, never fetched
    assert list((tmp_path / "configs" / "controlnet").glob("*/config.json"))


def test_fp16_single_file_loads_in_the_requested_dtype(tiny, tmp_path):
    t = tiny["sd15"]
    path = save_controlnet_single_file(t.controlnet, tmp_path / "half.safetensors", dtype=torch.float16)
    loaded = load_controlnet(path, "sd15", torch_dtype=torch.float32, home=tmp_path)
    assert loaded.dtype == torch.float32
    expected = t.controlnet.controlnet_mid_block.weight.half().float()
    assert torch.equal(loaded.controlnet_mid_block.weight, expected)


def test_pickle_single_file_is_read_safely_only_when_allowed(tiny, tmp_path):
    path = tmp_path / "old.pth"
    torch.save({"state_dict": controlnet_to_ldm(tiny["sd15"].controlnet)}, path)
    assert controlnet_family(path) == "sd15"  # header check via torch.load(weights_only=True) on meta
    with pytest.raises(ModelUnavailable, match=r"^old\.pth: it is a pickle file"):
        load_controlnet(path, "sd15", torch_dtype=torch.float32, home=tmp_path)
    loaded = load_controlnet(path, "sd15", torch_dtype=torch.float32, home=tmp_path, allow_pickle=True)
    _same_weights(loaded, tiny["sd15"].controlnet)


def test_the_catalog_finds_controlnets_by_name(tiny, tmp_path):
    from brushwork.config import Settings
    from brushwork.models.catalog import ModelCatalog

    models_dir = tiny["sd15"].folder.parent.parent
    catalog = ModelCatalog(Settings.load(home=tmp_path / "home", models_dir=models_dir))
    assert controlnet_family(catalog.adapter("controlnet", "tiny-sd15")) == "sd15"
    assert controlnet_family(catalog.adapter("controlnet", "tiny-sdxl-ldm")) == "sdxl"


def test_pickle_weights_in_a_folder_are_refused_unless_allowed(tiny, tmp_path):
    folder = tmp_path / "pickled"
    tiny["sd15"].controlnet.save_pretrained(str(folder), safe_serialization=False)
    with pytest.raises(ModelUnavailable, match=r"^pickled: .*pickle weights"):
        load_controlnet(folder, "sd15", torch_dtype=torch.float32, home=tmp_path)
    loaded = load_controlnet(folder, "sd15", torch_dtype=torch.float32, home=tmp_path, allow_pickle=True)
    _same_weights(loaded, tiny["sd15"].controlnet)


# -- in a pipeline ----------------------------------------------------------------------


PIPELINES = {
    "sd15": ("StableDiffusionControlNetPipeline", "StableDiffusionControlNetImg2ImgPipeline",
             "StableDiffusionControlNetInpaintPipeline"),
    "sdxl": ("StableDiffusionXLControlNetPipeline", "StableDiffusionXLControlNetImg2ImgPipeline",
             "StableDiffusionXLControlNetInpaintPipeline"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_scale_zero_is_no_controlnet_and_scale_one_changes_the_image(tiny, tmp_path, family):
    import diffusers

    t = tiny[family]
    cn = load_controlnet(t.ldm_file, family, torch_dtype=torch.float32, home=tmp_path)
    extra = {"add_watermarker": False} if family == "sdxl" else {}
    views = [getattr(diffusers, name).from_pipe(t.pipe, controlnet=cn, dtype=t.pipe.dtype, **extra)
             for name in PIPELINES[family]]
    for view in views:  # views over the same modules: nothing is copied
        for name in ("unet", "vae", "text_encoder", "tokenizer"):
            assert getattr(view, name) is getattr(t.pipe, name), name
        assert view.controlnet is cn
    view = views[0]
    view.set_progress_bar_config(disable=True)
    hint = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    common = dict(prompt="a red fox", num_inference_steps=2, height=64, width=64, output_type="np")

    def run(pipe: Any, **kwargs: Any) -> np.ndarray:
        return pipe(generator=torch.Generator("cpu").manual_seed(0), **common, **kwargs).images[0]

    plain = run(t.pipe)
    off = run(view, image=hint, controlnet_conditioning_scale=0.0)
    on = run(view, image=hint, controlnet_conditioning_scale=1.0)
    assert np.abs(off - plain).max() <= 1 / 255
    assert np.abs(on - plain).max() > 10 / 255


# -- what is not a usable ControlNet ----------------------------------------------------


def test_a_lora_in_the_controlnet_folder_is_named(tiny, tmp_path):
    from brushwork.testing.factories import save_tiny_lora

    path = save_tiny_lora(tiny["sd15"].pipe, tmp_path / "controlnet" / "mylora.safetensors")
    with pytest.raises(ModelUnavailable, match=r"^mylora\.safetensors: not a ControlNet: it is a LoRA") as info:
        controlnet_family(path)
    assert "\n" not in str(info.value)
    with pytest.raises(ModelUnavailable, match=r"^mylora\.safetensors: "):
        load_controlnet(path, "sd15", torch_dtype=torch.float32, home=tmp_path)


def test_random_bytes_named_safetensors(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(ModelUnavailable, match=r"^junk\.safetensors: not a readable \.safetensors file") as info:
        controlnet_family(path)
    assert "\n" not in str(info.value)


def _fake(path: Path, keys: dict[str, tuple[int, ...]]) -> Path:
    save_file({k: torch.zeros(s) for k, s in keys.items()}, str(path))
    return path


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"model.diffusion_model.input_blocks.0.0.weight": (4, 4, 3, 3)}, "Stable Diffusion checkpoint"),
        ({"adapter.body.0.resnets.0.block1.weight": (4, 4, 3, 3)}, "T2I-Adapter"),
        ({"encoder.conv_in.weight": (4, 3, 3, 3), "decoder.conv_out.weight": (3, 4, 3, 3)}, "VAE"),
        ({"something.else": (2,)}, "unrecognised key layout"),
    ],
)
def test_other_files_are_named(tmp_path, keys, message):
    path = _fake(tmp_path / "other.safetensors", keys)
    with pytest.raises(ModelUnavailable, match=rf"^other\.safetensors: not a ControlNet: .*{message}"):
        controlnet_family(path)


@pytest.mark.parametrize(
    ("extra", "message"),
    [({"task_embedding": (8, 32)}, "ControlNet Union"), ({"lora_controlnet": (1,)}, "Control-LoRA")],
)
def test_controlnet_variants_we_cannot_run_are_named(tiny, tmp_path, extra, message):
    """They carry ordinary ControlNet keys too; the marker decides."""
    state = {k: v.contiguous() for k, v in tiny["sd15"].controlnet.state_dict().items()}
    state.update({k: torch.zeros(s) for k, s in extra.items()})
    path = tmp_path / "variant.safetensors"
    save_file(state, str(path))
    with pytest.raises(ModelUnavailable, match=rf"^variant\.safetensors: unsupported ControlNet: a {message}"):
        controlnet_family(path)


def test_a_checkpoint_folder_is_not_a_controlnet(tmp_path):
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "config.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    with pytest.raises(ModelUnavailable, match=r"^pipe: it is a diffusers pipeline"):
        controlnet_family(folder)
    (folder / "model_index.json").unlink()
    (folder / "config.json").write_text('{"_class_name": "ControlNetUnionModel"}')
    with pytest.raises(ModelUnavailable, match=r"^pipe: config\.json names 'ControlNetUnionModel'"):
        controlnet_family(folder)


def test_sd2_controlnet_is_refused_by_name(tiny, tmp_path):
    folder = tmp_path / "sd21"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", "cross_attention_dim": 1024}))
    with pytest.raises(ModelUnavailable, match=r"^sd21: .*Stable Diffusion 2"):
        controlnet_family(folder)


def test_a_file_missing_a_tensor_is_a_one_line_error(tiny, tmp_path):
    state = load_file(str(tiny["sd15"].ldm_file))
    del state["control_model.zero_convs.3.0.weight"]
    path = tmp_path / "broken.safetensors"
    save_file(state, str(path))
    assert controlnet_family(path) == "sd15"  # the header looks like a ControlNet; loading checks completeness
    expected = r"^broken\.safetensors: .*no weights for controlnet_down_blocks\.3\.weight"
    with pytest.raises(ModelUnavailable, match=expected) as info:
        load_controlnet(path, "sd15", torch_dtype=torch.float32, home=tmp_path)
    assert "\n" not in str(info.value)


def test_wrong_family_for_load_and_for_the_model(tiny, tmp_path):
    with pytest.raises(ModelUnavailable, match=r"^tiny-sd15-ldm\.safetensors: it is a ControlNet for sd15, not sdxl"):
        load_controlnet(tiny["sd15"].ldm_file, "sdxl", torch_dtype=torch.float32, home=tmp_path)
    with pytest.raises(InvalidRequest) as info:
        check_compatible(controlnet_family(tiny["sd15"].ldm_file), "sdxl", "canny")
    assert info.value.field == "control"
    assert info.value.message == "ControlNet 'canny' is for sd15 but the model is sdxl"
    check_compatible("sdxl", "sdxl", "canny")


def test_module_imports_no_torch():
    code = (
        "import sys, brushwork.models.controlnet\n"
        "heavy = sorted(m for m in ('torch', 'diffusers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
