"""FLUX.1 files: recognised by tensor names, checked against their companion folder, converted like diffusers."""

from __future__ import annotations

import json

import pytest
import torch

from brushwork.errors import ModelUnavailable
from brushwork.models.flux import COMFY_PREFIX, bfl_to_diffusers, transformer_facts
from brushwork.models.loading import check_shapes, family_and_variant
from brushwork.models.offline_configs import (
    detect_family,
    mismatches,
    shipped_config_dir,
)
from brushwork.testing.flux_export import save_flux_single_file, transformer_to_bfl


def _full_size(guidance: bool) -> torch.nn.Module:
    from diffusers import FluxTransformer2DModel

    config = json.loads((shipped_config_dir("flux") / "transformer" / "config.json").read_text())
    with torch.device("meta"):
        return FluxTransformer2DModel.from_config({**config, "guidance_embeds": guidance})


def test_folder_and_single_file_are_flux_not_sd(tiny_models):
    assert family_and_variant(tiny_models.flux_folder) == ("flux", "base")
    assert family_and_variant(tiny_models.flux_single) == ("flux", "base")


@pytest.mark.parametrize("prefix", ["", COMFY_PREFIX])
@pytest.mark.parametrize("guidance", [False, True])
def test_conversion_matches_diffusers_at_full_size(prefix, guidance):
    from diffusers.loaders.single_file_utils import (
        convert_flux_transformer_checkpoint_to_diffusers,
    )

    model = _full_size(guidance)
    bfl = transformer_to_bfl(model, prefix)
    assert (prefix + "double_blocks.18.img_attn.qkv.weight") in bfl and (prefix + "single_blocks.37.linear1.bias") in bfl
    ours = bfl_to_diffusers(bfl, model.inner_dim)
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}
    assert set(ours) == set(model.state_dict())
    shapes = {key: tuple(value.shape) for key, value in bfl.items()}
    assert detect_family(shapes) == "flux"
    assert mismatches(transformer_facts(shapes, {**model.config})) == []


def test_tiny_transformer_round_trips_bit_for_bit(tiny_models):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(tiny_models.flux_folder, local_files_only=True)
    state = pipe.transformer.state_dict()
    back = bfl_to_diffusers(transformer_to_bfl(pipe.transformer, COMFY_PREFIX), pipe.transformer.inner_dim)
    assert set(back) == set(state) and all(torch.equal(back[k], state[k]) for k in state)


def test_comfyui_layout_loads_like_the_bfl_file(tiny_models, tmp_path):
    from diffusers import FluxPipeline

    from brushwork.models.flux import load_transformer

    pipe = FluxPipeline.from_pretrained(tiny_models.flux_folder, local_files_only=True)
    comfy = save_flux_single_file(pipe, tmp_path / "comfy.safetensors", prefix=COMFY_PREFIX)
    assert family_and_variant(comfy) == ("flux", "base")
    a = load_transformer(comfy, tiny_models.flux_folder, torch.float32).state_dict()
    b = load_transformer(tiny_models.flux_single, tiny_models.flux_folder, torch.float32).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_single_file_needs_a_flux_companion_folder(tiny_models):
    with pytest.raises(ModelUnavailable, match="holds the transformer only: set models.NAME.config"):
        check_shapes(tiny_models.flux_single)
    with pytest.raises(ModelUnavailable, match="is not a diffusers FLUX.1 folder"):
        check_shapes(tiny_models.flux_single, tiny_models.sd15_folder)
    check_shapes(tiny_models.flux_single, tiny_models.flux_folder)


def test_a_transformer_that_does_not_fit_the_companion_is_named(tiny_models):
    with pytest.raises(ModelUnavailable, match="transformer width 32 does not match 3072"):
        check_shapes(tiny_models.flux_single, shipped_config_dir("flux"))


@pytest.mark.parametrize(("extra", "label"), [
    ({"single_stream_modulation.lin.weight": (3, 3)}, "FLUX.2"),
    ({"img_in.weight": (3072, 384)}, "FLUX.1 Fill"),
    ({"img_in.weight": (3072, 128)}, "FLUX.1 Depth/Canny"),
])
def test_flux_relatives_are_refused_by_name(extra, label):
    shapes = {"double_blocks.0.img_attn.norm.key_norm.scale": (128,), "img_in.weight": (3072, 64), **extra}
    with pytest.raises(ValueError, match=f"unsupported checkpoint layout: {label}"):
        detect_family(shapes)


def test_shipped_configs_are_flux1_schnell():
    root = shipped_config_dir("flux")
    vae = json.loads((root / "vae" / "config.json").read_text())
    scheduler = json.loads((root / "scheduler" / "scheduler_config.json").read_text())
    index = json.loads((root / "model_index.json").read_text())
    assert (vae["latent_channels"], vae["scaling_factor"], vae["shift_factor"]) == (16, 0.3611, 0.1159)
    assert scheduler["_class_name"] == "FlowMatchEulerDiscreteScheduler" and scheduler["use_dynamic_shifting"] is False
    assert index["_class_name"] == "FluxPipeline" and index["tokenizer_2"] == ["transformers", "T5TokenizerFast"]
