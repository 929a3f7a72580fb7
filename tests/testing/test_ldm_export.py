"""diffusers -> LDM single-file export, checked against diffusers' own single-file loader.

Two kinds of proof:

* full size, on the `meta` device (no memory): the shipped SD 1.5 / SDXL
  configs build models whose exported LDM keys have the real checkpoints'
  names, shapes and counts, and diffusers' conversion functions map those keys
  back onto exactly the models' parameters;
* tiny, with real random weights: save as a `.safetensors` single file, load
  it back with `from_single_file(config=<folder>, local_files_only=True)`
  and get bit-identical parameters.
"""

from __future__ import annotations

import json
import types
from pathlib import Path
from typing import Any

import pytest
import torch

from brushwork.models.offline_configs import (
    detect_family,
    read_checkpoint_shapes,
    shipped_config_dir,
)
from brushwork.testing.factories import tiny_sd15_pipeline, tiny_sdxl_pipeline
from brushwork.testing.ldm_export import pipeline_to_ldm_state_dict, save_single_file

# ---------------------------------------------------------------- full size, meta device


def _meta_pipeline(family: str) -> types.SimpleNamespace:
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    folder = shipped_config_dir(family)  # type: ignore[arg-type]
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet/config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((folder / "vae/config.json").read_text()))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder"))
        text_encoder_2 = None
        if family == "sdxl":
            text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    return types.SimpleNamespace(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2)


@pytest.fixture(scope="module")
def meta_exports() -> dict[str, tuple[types.SimpleNamespace, dict[str, torch.Tensor]]]:
    out = {}
    for family in ("sd15", "sdxl"):
        pipe = _meta_pipeline(family)
        out[family] = (pipe, pipeline_to_ldm_state_dict(pipe))
    return out


# Shapes of real tensors in v1-5-pruned-emaonly.safetensors / sd_xl_base_1.0.safetensors.
ANCHORS = {
    "sd15": {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.time_embed.0.weight": (1280, 320),
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.middle_block.1.proj_out.weight": (1280, 1280, 1, 1),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
        "model.diffusion_model.out.2.weight": (4, 320, 3, 3),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
        "cond_stage_model.transformer.text_model.embeddings.position_ids": (1, 77),
        "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": (768, 3072),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
        "first_stage_model.encoder.conv_out.weight": (8, 512, 3, 3),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.quant_conv.weight": (8, 8, 1, 1),
    },
    "sdxl": {
        "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.label_emb.0.2.weight": (1280, 1280),
        "model.diffusion_model.input_blocks.4.1.proj_in.weight": (640, 640),
        "model.diffusion_model.input_blocks.4.1.transformer_blocks.1.attn2.to_k.weight": (640, 2048),
        "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.ff.net.0.proj.weight": (10240, 1280),
        "model.diffusion_model.middle_block.1.transformer_blocks.9.norm3.weight": (1280,),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
        "model.diffusion_model.output_blocks.6.0.skip_connection.weight": (320, 960, 1, 1),
        "model.diffusion_model.output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "conditioner.embedders.0.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight": (768, 768),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280),
        "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
        "conditioner.embedders.1.model.ln_final.weight": (1280,),
        "conditioner.embedders.1.model.logit_scale": (),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_bias": (3840,),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.out_proj.weight": (1280, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.31.mlp.c_fc.weight": (5120, 1280),
        "conditioner.embedders.1.model.transformer.resblocks.0.ln_2.bias": (1280,),
        "first_stage_model.decoder.conv_out.weight": (3, 128, 3, 3),
        "first_stage_model.decoder.mid.attn_1.proj_out.weight": (512, 512, 1, 1),
    },
}

# Key counts of the real files (EMA-free): SD1.5 v1-5-pruned-emaonly = 1131, SDXL base 1.0 = 2515.
COUNTS = {
    "sd15": {"model.diffusion_model.": 686, "first_stage_model.": 248, "cond_stage_model.transformer.": 197},
    "sdxl": {
        "model.diffusion_model.": 1680,
        "first_stage_model.": 248,
        "conditioner.embedders.0.transformer.": 197,
        "conditioner.embedders.1.model.": 390,
    },
}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_export_has_real_key_layout(family: str, meta_exports: dict) -> None:
    _pipe, state = meta_exports[family]
    assert all(t.device.type == "meta" for t in state.values())
    for key, shape in ANCHORS[family].items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    for prefix, count in COUNTS[family].items():
        assert sum(k.startswith(prefix) for k in state) == count, prefix
    assert len(state) == sum(COUNTS[family].values())


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_export_detects_family(family: str, meta_exports: dict) -> None:
    _pipe, state = meta_exports[family]
    assert detect_family(state.keys()) == family
    assert detect_family({k: tuple(v.shape) for k, v in state.items()}) == family
    assert detect_family(state) == family  # a state dict of tensors works as a shape mapping


def _shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_export_round_trips_through_diffusers_converters(family: str, meta_exports: dict) -> None:
    """diffusers' own LDM->diffusers converters, fed the shipped configs, rebuild every parameter."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
    )

    pipe, state = meta_exports[family]
    folder = shipped_config_dir(family)  # type: ignore[arg-type]
    unet_config = json.loads((folder / "unet/config.json").read_text())
    vae_config = json.loads((folder / "vae/config.json").read_text())

    assert _shapes(convert_ldm_unet_checkpoint(state, unet_config)) == _shapes(pipe.unet.state_dict())
    assert _shapes(convert_ldm_vae_checkpoint(state, vae_config)) == _shapes(pipe.vae.state_dict())

    clip = convert_ldm_clip_checkpoint(state)
    # Real files carry the `position_ids` buffer; transformers no longer persists it and skips it on load.
    clip = {k: v for k, v in clip.items() if not k.endswith("embeddings.position_ids")}
    if not hasattr(pipe.text_encoder, "text_model"):  # transformers >= 5.6 flattened CLIPTextModel
        clip = {k.removeprefix("text_model."): v for k, v in clip.items()}
    assert _shapes(clip) == _shapes(pipe.text_encoder.state_dict())

    if family == "sdxl":
        bigg = convert_open_clip_checkpoint(pipe.text_encoder_2, state, prefix="conditioner.embedders.1.model.")
        assert _shapes(bigg) == _shapes(pipe.text_encoder_2.state_dict())


def test_save_single_file_refuses_meta_tensors(meta_exports: dict, tmp_path: Path) -> None:
    pipe, _state = meta_exports["sd15"]
    with pytest.raises(ValueError, match="meta"):
        save_single_file(pipe, tmp_path / "x.safetensors")


# ---------------------------------------------------------------- tiny, real weights


def _tiny_sd15(tmp: Path) -> Any:
    return tiny_sd15_pipeline(tmp / "tok")


def _tiny_sdxl(tmp: Path) -> Any:
    return tiny_sdxl_pipeline(tmp / "tok")


def _no_hub(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if diffusers tries to reach the Hub instead of using the local config folder."""
    import diffusers.loaders.single_file as single_file

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError(f"Hub access attempted: {args} {kwargs}")

    monkeypatch.setattr(single_file, "snapshot_download", refuse)


def _assert_same_weights(original: Any, loaded: Any, components: list[str]) -> None:
    for name in components:
        a, b = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert a.keys() == b.keys(), name
        for key in a:
            assert b[key].device.type == "cpu", f"{name}.{key} was not loaded (still {b[key].device})"
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs"


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_tiny_single_file_round_trip(family: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _no_hub(monkeypatch)
    pipe = _tiny_sd15(tmp_path) if family == "sd15" else _tiny_sdxl(tmp_path)
    config_dir = tmp_path / "config"
    pipe.save_pretrained(config_dir)
    checkpoint = save_single_file(pipe, tmp_path / f"tiny-{family}.safetensors")

    shapes = read_checkpoint_shapes(checkpoint)
    assert detect_family(shapes) == family
    assert detect_family(shapes.keys()) == family

    if family == "sd15":
        loaded = StableDiffusionPipeline.from_single_file(
            str(checkpoint),
            config=str(config_dir),
            local_files_only=True,
            safety_checker=None,
            requires_safety_checker=False,
        )
        components = ["unet", "vae", "text_encoder"]
    else:
        loaded = StableDiffusionXLPipeline.from_single_file(
            str(checkpoint), config=str(config_dir), local_files_only=True
        )
        components = ["unet", "vae", "text_encoder", "text_encoder_2"]
    assert type(loaded) is type(pipe)
    _assert_same_weights(pipe, loaded, components)
    assert loaded.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    if family == "sdxl":
        assert loaded.tokenizer_2.pad_token == "!"


def test_tiny_sd15_single_file_generates_identically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """End to end: the reloaded pipeline denoises exactly like the original (same weights, same configs)."""
    from diffusers import StableDiffusionPipeline

    _no_hub(monkeypatch)
    pipe = _tiny_sd15(tmp_path)
    pipe.save_pretrained(tmp_path / "config")
    checkpoint = save_single_file(pipe, tmp_path / "tiny.safetensors")
    loaded = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(tmp_path / "config"), local_files_only=True,
        safety_checker=None, requires_safety_checker=False,
    )

    def run(p: Any) -> torch.Tensor:
        p.set_progress_bar_config(disable=True)
        out = p("a photo of a cat", num_inference_steps=2, height=64, width=64,
                generator=torch.Generator().manual_seed(0), output_type="pt")
        return out.images

    assert torch.equal(run(pipe), run(loaded))


def test_save_single_file_casts_floats_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp16 files (the usual CivitAI upload) load back equal to the fp16-cast original."""
    from diffusers import StableDiffusionPipeline
    from safetensors import safe_open

    _no_hub(monkeypatch)
    pipe = _tiny_sd15(tmp_path)
    pipe.save_pretrained(tmp_path / "config")
    checkpoint = save_single_file(pipe, tmp_path / "tiny-fp16.safetensors", dtype=torch.float16)
    with safe_open(str(checkpoint), framework="pt") as fh:
        position_ids = fh.get_tensor("cond_stage_model.transformer.text_model.embeddings.position_ids")
        assert position_ids.dtype == torch.int64 and position_ids.tolist() == [list(range(77))]
        assert fh.get_tensor("model.diffusion_model.out.2.weight").dtype == torch.float16
    loaded = StableDiffusionPipeline.from_single_file(
        str(checkpoint), config=str(tmp_path / "config"), local_files_only=True, torch_dtype=torch.float16,
        safety_checker=None, requires_safety_checker=False,
    )
    _assert_same_weights(pipe.to(torch.float16), loaded, ["unet", "vae", "text_encoder"])
