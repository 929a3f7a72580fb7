"""Shipped offline configs, derived CLIP tokenizer files, and checkpoint family detection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from brushwork.models import offline_configs as oc
from brushwork.models.clip_vocab import CLIP_VOCAB_SIZE, write_clip_tokenizer_files
from brushwork.models.offline_configs import (
    detect_family,
    family_of_pipeline_config,
    materialize_config_dir,
    missing_components,
    read_checkpoint_keys,
    read_checkpoint_shapes,
    shipped_config_dir,
)

CAT_IDS = [49406, 320, 1125, 539, 320, 2368, 49407]
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("brushwork-home")


# ---------------------------------------------------------------- tokenizer files


def test_derived_tokenizer_files_match_openai_clip(tmp_path: Path) -> None:
    from transformers import CLIPTokenizer

    write_clip_tokenizer_files(tmp_path)
    vocab = json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    merges = (tmp_path / "merges.txt").read_text(encoding="utf-8").splitlines()
    assert len(vocab) == CLIP_VOCAB_SIZE == 49408
    assert sorted(vocab.values()) == list(range(49408))
    assert vocab["!"] == 0 and vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert vocab["cat</w>"] == 2368
    assert merges[0] == "#version: 0.2" and merges[1] == "i n" and len(merges) == 1 + 48894

    tokenizer = CLIPTokenizer.from_pretrained(str(tmp_path))
    assert tokenizer("a photo of a cat").input_ids == CAT_IDS
    assert len(tokenizer) == 49408


def test_write_clip_tokenizer_files_is_idempotent(tmp_path: Path) -> None:
    write_clip_tokenizer_files(tmp_path)
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    write_clip_tokenizer_files(tmp_path)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before
    assert sorted(before) == ["merges.txt", "vocab.json"]  # no temp files left behind

    (tmp_path / "vocab.json").write_text("{}", encoding="utf-8")  # damaged -> rewritten
    write_clip_tokenizer_files(tmp_path)
    assert len(json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))) == 49408


def test_light_modules_do_not_import_torch() -> None:
    """offline_configs / clip_vocab must stay cheap to import (CLI start-up, `brushwork models`)."""
    code = (
        "import sys, brushwork; before = 'torch' in sys.modules; "
        "import brushwork.models.offline_configs, brushwork.models.clip_vocab; "
        "assert before or 'torch' not in sys.modules, 'torch imported'; "
        "assert 'diffusers' not in sys.modules or before, 'diffusers imported'"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)


# ---------------------------------------------------------------- materialised config folders


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_materialized_tokenizers(family: str, cache_dir: Path) -> None:
    from transformers import CLIPTokenizer

    folder = materialize_config_dir(family, cache_dir)  # type: ignore[arg-type]
    assert folder == cache_dir / "configs" / family
    tokenizer_dirs = ["tokenizer"] if family == "sd15" else ["tokenizer", "tokenizer_2"]
    for sub in tokenizer_dirs:
        tokenizer = CLIPTokenizer.from_pretrained(str(folder / sub))
        assert tokenizer("a photo of a cat").input_ids == CAT_IDS
        assert len(tokenizer) == 49408
        assert tokenizer.model_max_length == 77
        assert tokenizer.bos_token == "<|startoftext|>" and tokenizer.eos_token == "<|endoftext|>"
        expected_pad = "!" if sub == "tokenizer_2" else "<|endoftext|>"
        assert tokenizer.pad_token == expected_pad
        assert tokenizer.pad_token_id == (0 if sub == "tokenizer_2" else 49407)
        padded = tokenizer("a cat", padding="max_length", max_length=8).input_ids
        assert padded[4:] == [tokenizer.pad_token_id] * 4


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_config_folder_loads_every_component(family: str, cache_dir: Path) -> None:
    import diffusers
    from accelerate import init_empty_weights
    from transformers import CLIPTextConfig

    folder = materialize_config_dir(family, cache_dir)  # type: ignore[arg-type]
    pipeline_cls = getattr(diffusers, oc.PIPELINE_CLASS_BY_FAMILY[family])  # type: ignore[index]
    index = pipeline_cls.load_config(str(folder))
    assert index["_class_name"] == pipeline_cls.__name__
    components = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    if family == "sd15":
        assert index["requires_safety_checker"] is False
        assert components["safety_checker"] == [None, None]
        assert components["feature_extractor"] == [None, None]

    for name, (library, class_name) in components.items():
        if library is None:
            continue
        if library == "diffusers":
            cls = getattr(diffusers, class_name)
            config = cls.load_config(str(folder), subfolder=name)
            if name == "scheduler":
                cls.from_config(config)
            else:
                with init_empty_weights():
                    cls.from_config(config)
        elif class_name.startswith("CLIPTextModel"):
            CLIPTextConfig.from_pretrained(str(folder / name))
        else:
            assert class_name == "CLIPTokenizer", name


def _load(folder: Path, sub: str) -> dict:
    return json.loads((folder / sub).read_text(encoding="utf-8"))


def test_sd15_config_values() -> None:
    folder = shipped_config_dir("sd15")
    unet = _load(folder, "unet/config.json")
    assert unet["sample_size"] == 64 and unet["cross_attention_dim"] == 768
    assert unet["attention_head_dim"] == 8 and unet["use_linear_projection"] is False
    assert unet["block_out_channels"] == [320, 640, 1280, 1280] and unet["layers_per_block"] == 2
    assert unet["addition_embed_type"] is None
    vae = _load(folder, "vae/config.json")
    assert vae["scaling_factor"] == 0.18215 and vae["sample_size"] == 512
    te = _load(folder, "text_encoder/config.json")
    assert (te["hidden_size"], te["num_hidden_layers"], te["num_attention_heads"]) == (768, 12, 12)
    assert te["hidden_act"] == "quick_gelu" and te["vocab_size"] == 49408
    sched = _load(folder, "scheduler/scheduler_config.json")
    assert sched["_class_name"] == "PNDMScheduler" and sched["beta_schedule"] == "scaled_linear"
    assert sched["prediction_type"] == "epsilon"


def test_sdxl_config_values() -> None:
    folder = shipped_config_dir("sdxl")
    unet = _load(folder, "unet/config.json")
    assert unet["sample_size"] == 128 and unet["cross_attention_dim"] == 2048
    assert unet["attention_head_dim"] == [5, 10, 20] and unet["use_linear_projection"] is True
    assert unet["transformer_layers_per_block"] == [1, 2, 10]
    assert unet["addition_embed_type"] == "text_time" and unet["addition_time_embed_dim"] == 256
    assert unet["projection_class_embeddings_input_dim"] == 2816 == 6 * 256 + 1280
    assert unet["block_out_channels"] == [320, 640, 1280]
    vae = _load(folder, "vae/config.json")
    assert vae["scaling_factor"] == 0.13025 and vae["force_upcast"] is True and vae["sample_size"] == 1024
    te2 = _load(folder, "text_encoder_2/config.json")
    assert te2["architectures"] == ["CLIPTextModelWithProjection"]
    assert (te2["hidden_size"], te2["num_hidden_layers"], te2["num_attention_heads"]) == (1280, 32, 20)
    assert (te2["intermediate_size"], te2["projection_dim"], te2["hidden_act"]) == (5120, 1280, "gelu")
    te = _load(folder, "text_encoder/config.json")
    assert te["hidden_size"] + te2["hidden_size"] == unet["cross_attention_dim"]
    assert _load(folder, "tokenizer_2/special_tokens_map.json")["pad_token"] == "!"
    sched = _load(folder, "scheduler/scheduler_config.json")
    assert sched["_class_name"] == "EulerDiscreteScheduler" and sched["timestep_spacing"] == "leading"


def test_materialize_is_idempotent_and_repairs(tmp_path: Path) -> None:
    folder = materialize_config_dir("sdxl", tmp_path)
    stamp = folder / ".brushwork-config-stamp"
    mtime = stamp.stat().st_mtime_ns
    assert materialize_config_dir("sdxl", tmp_path) == folder
    assert stamp.stat().st_mtime_ns == mtime  # reused, not rebuilt

    (folder / "tokenizer_2" / "merges.txt").unlink()  # incomplete -> rebuilt
    assert materialize_config_dir("sdxl", tmp_path) == folder
    assert (folder / "tokenizer_2" / "merges.txt").is_file()

    stamp.write_text("from an older brushwork\n")  # stale -> rebuilt
    (folder / "unet" / "config.json").write_text("{}")
    materialize_config_dir("sdxl", tmp_path)
    assert _load(folder, "unet/config.json")["cross_attention_dim"] == 2048
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == ["sdxl"]  # no temp dirs left


def test_materialize_survives_concurrent_callers(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: materialize_config_dir("sd15", tmp_path), range(6)))
    assert set(results) == {tmp_path / "configs" / "sd15"}
    assert family_of_pipeline_config(results[0]) == "sd15"
    assert len(json.loads((results[0] / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))) == 49408
    assert sorted(p.name for p in (tmp_path / "configs").iterdir()) == ["sd15"]


def test_materialize_rejects_unknown_family(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sd15, sdxl"):
        materialize_config_dir("sd21", tmp_path)  # type: ignore[arg-type]


# ---------------------------------------------------------------- family of a config folder


def test_family_of_pipeline_config(tmp_path: Path) -> None:
    assert family_of_pipeline_config(shipped_config_dir("sd15")) == "sd15"
    assert family_of_pipeline_config(shipped_config_dir("sdxl")) == "sdxl"
    assert family_of_pipeline_config(shipped_config_dir("flux")) == "flux"
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    with pytest.raises(ValueError, match="StableDiffusionPipeline.*StableDiffusionXLPipeline"):
        family_of_pipeline_config(tmp_path)
    with pytest.raises(ValueError, match="cannot read"):
        family_of_pipeline_config(tmp_path / "nowhere")


# ---------------------------------------------------------------- checkpoint headers & detection

SD15_KEYS = [
    "model.diffusion_model.input_blocks.0.0.weight",
    "model.diffusion_model.output_blocks.11.0.skip_connection.weight",
    "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    "first_stage_model.decoder.conv_out.weight",
]
SDXL_KEYS = [
    "model.diffusion_model.input_blocks.0.0.weight",
    "model.diffusion_model.label_emb.0.0.weight",
    "model.diffusion_model.output_blocks.8.0.skip_connection.weight",
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight",
    "conditioner.embedders.1.model.positional_embedding",
    "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias",
    "first_stage_model.decoder.conv_out.weight",
]


def test_marker_keys_match_diffusers() -> None:
    from diffusers.loaders.single_file_utils import CHECKPOINT_KEY_NAMES as K

    assert oc.KEY_V1 == K["v1"] and oc.KEY_V2 == K["v2"]
    assert oc.KEY_XL_BASE == K["xl_base"] and oc.KEY_XL_REFINER == K["xl_refiner"]
    assert oc.KEY_UPSCALE == K["upscale"] and oc.KEY_PLAYGROUND == K["playground-v2-5"]
    assert oc.KEY_UNET_IN == K["inpainting"] and oc.KEY_CLIP == K["clip"] and oc.KEY_CLIP_SDXL == K["clip_sdxl"]
    assert oc.KEY_OPEN_CLIP == K["open_clip"] and oc.KEY_OPEN_CLIP_SDXL == K["open_clip_sdxl"]


def test_detect_family_supported() -> None:
    assert detect_family(SD15_KEYS) == "sd15"
    assert detect_family(iter(SDXL_KEYS)) == "sdxl"
    # Tiny checkpoints lack the full-size marker keys; structure decides.
    tiny_sd15 = [k for k in SD15_KEYS if "output_blocks.11" not in k] + [
        "model.diffusion_model.output_blocks.5.0.in_layers.0.weight"
    ]
    assert detect_family(tiny_sd15) == "sd15"
    tiny_sdxl = [k for k in SDXL_KEYS if "resblocks.9" not in k]
    assert detect_family(tiny_sdxl) == "sdxl"
    # A shape mapping works too and lets detection look at input channels.
    shapes = {k: (320, 4, 3, 3) if k == oc.KEY_UNET_IN else (1,) for k in SD15_KEYS}
    assert detect_family(shapes) == "sd15"


@pytest.mark.parametrize("key", ["model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
                                 "double_blocks.0.img_attn.norm.key_norm.scale"])
def test_detect_family_knows_flux_transformers_in_bfl_and_comfyui_layout(key: str) -> None:
    assert detect_family([key]) == "flux"


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (SD15_KEYS[:2] + ["cond_stage_model.model.token_embedding.weight"], "Stable Diffusion 2"),
        (
            SD15_KEYS[:2] + ["conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"],
            "SDXL refiner",
        ),
        (SDXL_KEYS + ["edm_mean"], "Playground"),
        (SD15_KEYS + ["v_pred"], "v-prediction"),
        (["joint_blocks.0.context_block.adaLN_modulation.1.bias"], "Stable Diffusion 3"),
        (["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"], "LoRA"),
        (["conv_in.weight", "down_blocks.0.resnets.0.conv1.weight"], "diffusers-format"),
        (["encoder.conv_in.weight", "decoder.conv_out.weight"], "standalone VAE"),
        ([], "empty"),
        (["something.else"], "unrecognised"),
    ],
)
def test_detect_family_rejects_with_a_named_layout(keys: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        detect_family(keys)
    assert "Supported: SD 1.x/1.5" in str(info.value)


@pytest.mark.parametrize(("channels", "message"), [(8, "instruct-pix2pix"), (5, "non-text-to-image")])
def test_detect_family_rejects_edit_unets_when_shapes_known(channels: int, message: str) -> None:
    shapes = {k: (1,) for k in SD15_KEYS} | {oc.KEY_UNET_IN: (320, channels, 3, 3)}
    with pytest.raises(ValueError, match=f"SD 1.x {message} UNet \\({channels} input channels"):
        detect_family(shapes)
    shapes = {k: (1,) for k in SDXL_KEYS} | {oc.KEY_UNET_IN: (320, channels, 3, 3)}
    with pytest.raises(ValueError, match=f"SDXL {message} UNet \\({channels} input channels"):
        detect_family(shapes)


def test_detect_family_rejects_sd2_unet_by_width() -> None:
    shapes = {k: (1,) for k in SD15_KEYS if k.startswith("model.")} | {oc.KEY_V2: (320, 1024)}
    with pytest.raises(ValueError, match="Stable Diffusion 2"):
        detect_family(shapes)


def test_missing_components() -> None:
    assert missing_components(SD15_KEYS, "sd15") == []
    assert missing_components(SDXL_KEYS, "sdxl") == []
    no_vae = [k for k in SDXL_KEYS if not k.startswith("first_stage_model.")]
    assert missing_components(no_vae, "sdxl") == ["vae"]
    assert missing_components(SD15_KEYS[:2], "sd15") == ["vae", "text_encoder"]


def test_read_checkpoint_keys_and_shapes(tmp_path: Path) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file(
        {
            oc.KEY_UNET_IN: np.zeros((32, 4, 3, 3), dtype=np.float16),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": np.zeros((1, 77), dtype=np.int64),
        },
        str(path),
    )
    assert sorted(read_checkpoint_keys(path)) == sorted(
        [oc.KEY_UNET_IN, "cond_stage_model.transformer.text_model.embeddings.position_ids"]
    )
    assert read_checkpoint_shapes(path)[oc.KEY_UNET_IN] == (32, 4, 3, 3)

    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"\x80\x02not a safetensors file")
    with pytest.raises(ValueError, match="not a readable .safetensors"):
        read_checkpoint_keys(bogus)


# ---------------------------------------------------------------- single-file shapes against configs


def _full_size_shapes(family: str) -> dict[str, tuple[int, ...]]:
    """A full-size checkpoint's key names and shapes, made on the meta device from the shipped configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from brushwork.testing.ldm_export import pipeline_to_ldm_state_dict

    folder = shipped_config_dir(family)  # type: ignore[arg-type]
    with init_empty_weights():
        parts = {
            "unet": UNet2DConditionModel.from_config(json.loads((folder / "unet/config.json").read_text())),
            "vae": AutoencoderKL.from_config(json.loads((folder / "vae/config.json").read_text())),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(folder / "text_encoder")),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
            if family == "sdxl" else None,
        }
    import types

    state = pipeline_to_ldm_state_dict(types.SimpleNamespace(**parts))
    return {key: tuple(value.shape) for key, value in state.items()}


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_full_size_checkpoints_fit_the_shipped_configs(family: str) -> None:
    shapes = _full_size_shapes(family)
    assert detect_family(shapes) == family
    oc.check_against_config(shapes, shipped_config_dir(family), family)  # type: ignore[arg-type]


def test_full_size_sdxl_does_not_fit_sd15() -> None:
    shapes = _full_size_shapes("sd15")
    shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 1024)
    with pytest.raises(ValueError, match="^text encoder width 1024 does not match 768 in SD 1.5's standard config"):
        oc.check_against_config(shapes, shipped_config_dir("sd15"), "sd15")


@pytest.fixture(scope="module")
def tiny_shapes(tiny_models) -> dict[str, dict[str, tuple[int, ...]]]:
    return {"sd15": read_checkpoint_shapes(tiny_models.sd15_single),
            "sdxl": read_checkpoint_shapes(tiny_models.sdxl_single)}


# Each edit of a matching config folder changes tensor shapes diffusers would load; each must be named.
PERTURBATIONS = [
    ("sd15", "text_encoder", {"hidden_size": 64}, "text encoder width 32 does not match 64"),
    ("sd15", "text_encoder", {"num_hidden_layers": 12}, "text encoder layers 5 does not match 12"),
    ("sd15", "text_encoder", {"intermediate_size": 64}, "text encoder MLP width 37 does not match 64"),
    ("sd15", "text_encoder", {"max_position_embeddings": 128}, "text encoder positions 77 does not match 128"),
    ("sd15", "unet", {"cross_attention_dim": 768}, "UNet cross-attention width 32 does not match 768"),
    ("sd15", "unet", {"block_out_channels": [64, 128]}, "UNet widths per level 32/64 does not match 64/128"),
    ("sd15", "unet", {"block_out_channels": [32, 64, 64], "down_block_types": [
        "DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]}, "UNet widths per level"),
    ("sd15", "unet", {"layers_per_block": 1}, "UNet blocks per level 2/2 does not match 1/1"),
    ("sd15", "unet", {"down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]},
     "UNet transformer depth per level 0/1 does not match 1/1"),
    ("sd15", "unet", {"transformer_layers_per_block": 2}, "UNet transformer depth per level 0/1 does not match 0/2"),
    ("sd15", "unet", {"use_linear_projection": True},
     "UNet attention projection 1x1 convolution does not match linear"),
    ("sd15", "unet", {"in_channels": 9}, "UNet input channels 4 does not match 9"),
    ("sd15", "vae", {"latent_channels": 16}, "VAE latent channels 4 does not match 16"),
    ("sd15", "vae", {"block_out_channels": [8, 16, 32, 32]}, "VAE widths per level 8/16/16/16 does not match"),
    ("sd15", "vae", {"layers_per_block": 2}, "VAE blocks per level 1 does not match 2"),
    ("sdxl", "text_encoder_2", {"hidden_size": 1280}, "second text encoder width 64 does not match 1280"),
    ("sdxl", "text_encoder_2", {"projection_dim": 64}, "second text encoder projection width 32 does not match 64"),
    ("sdxl", "text_encoder_2", {"num_hidden_layers": 32}, "second text encoder layers 5 does not match 32"),
    ("sdxl", "unet", {"transformer_layers_per_block": [1, 1]},
     "UNet transformer depth per level 0/2 does not match 0/1"),
    ("sdxl", "unet", {"projection_class_embeddings_input_dim": 2816},
     "UNet added-conditions width 80 does not match 2816"),
]


@pytest.mark.parametrize(("family", "component", "edit", "message"), PERTURBATIONS,
                         ids=[f"{p[0]}-{p[1]}-{next(iter(p[2]))}" for p in PERTURBATIONS])
def test_every_shape_defining_config_value_is_checked(tiny_models, tiny_shapes, tmp_path: Path, family: str,
                                                       component: str, edit: dict, message: str) -> None:
    import shutil

    source = tiny_models.sd15_folder if family == "sd15" else tiny_models.sdxl_folder
    folder = tmp_path / "configs"
    for path in source.rglob("*.json"):  # configs only; no weights needed
        target = folder / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
    oc.check_against_config(tiny_shapes[family], folder, family)  # the unedited copy fits
    config = folder / component / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **edit}))
    with pytest.raises(ValueError) as info:
        oc.check_against_config(tiny_shapes[family], folder, family)
    assert message in str(info.value) and f"the config folder {folder}" in str(info.value)
    assert "\n" not in str(info.value)
