"""SDXL base → refiner hand-off on tiny models: pixels, sharing, detection, refusals, metadata, CLI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.errors import InvalidRequest, NotFound
from brushwork.testing.images import picture

FAST = {"model": "tiny-sdxl", "seed": 11, "steps": 4, "width": 64, "height": 64, "sampler": "Euler", "cfg": 5.0}


@dataclass(frozen=True)
class RefinerModels:
    home: Path
    models_dir: Path
    refiner_folder: Path
    refiner_single: Path


@pytest.fixture(scope="module")
def refiner_models(tiny_models, tmp_path_factory: pytest.TempPathFactory) -> RefinerModels:
    """A models folder with the tiny SDXL and SD 1.5 bases and a tiny refiner (folder + single file)."""
    from brushwork.models.tiny import save_pipeline, tiny_sdxl_refiner_pipeline
    from brushwork.testing.ldm_export import save_single_file

    root = tmp_path_factory.mktemp("refiner")
    checkpoints = root / "models" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "tiny-sdxl").symlink_to(tiny_models.sdxl_folder, target_is_directory=True)
    (checkpoints / "tiny-sd15").symlink_to(tiny_models.sd15_folder, target_is_directory=True)
    refiner = tiny_sdxl_refiner_pipeline(root / "tok", seed=7)
    folder = save_pipeline(refiner, checkpoints / "tiny-refiner")
    single = save_single_file(refiner, root / "singles" / "tiny-refiner-single.safetensors")
    return RefinerModels(root / "home", root / "models", folder, single)


def _settings(models: RefinerModels, tmp_path: Path):
    from brushwork.config import ModelSource, Settings

    return Settings.load(
        home=models.home, models_dir=models.models_dir, styles_dir=tmp_path / "styles", output_dir=tmp_path / "out",
        models={"tiny-refiner-single": ModelSource(source=str(models.refiner_single), family="sdxl",
                                                   config=str(models.refiner_folder))},
    )


@pytest.fixture(scope="module")
def rapi(refiner_models, tmp_path_factory):
    """One warm Brushwork over the refiner models folder, for tests that don't count loads."""
    from brushwork.facade import Brushwork

    return Brushwork(_settings(refiner_models, tmp_path_factory.mktemp("rapi")))


@pytest.fixture(scope="module")
def alone(rapi):
    """The tiny SDXL base alone, no refiner."""
    return rapi.generate("a lighthouse at dusk", **FAST)


@pytest.fixture(scope="module")
def handed(rapi):
    """The same request handed over to the folder refiner at 0.5, with its progress events."""
    events: list = []
    result = rapi.generate("a lighthouse at dusk", refiner="tiny-refiner", refiner_switch=0.5,
                           on_progress=events.append, **FAST)
    return result, events


def px(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


# ---------------------------------------------------------------- pixels


def test_switch_one_is_the_base_alone_bit_for_bit(rapi, alone):
    loads = rapi.engine.refiners.stats.loads
    switched = rapi.generate("a lighthouse at dusk", refiner="tiny-refiner", refiner_switch=1.0, **FAST)
    assert np.array_equal(px(alone.images[0]), px(switched.images[0]))
    assert rapi.engine.refiners.stats.loads == loads  # nothing to hand over: the refiner is not even loaded
    assert switched.plan.refine is not None and switched.plan.refine.refiner_switch == 1.0


def test_hand_off_changes_the_image_deterministically_and_counts_both_passes(rapi, alone, handed):
    first, events = handed
    again = rapi.generate("a lighthouse at dusk", refiner="tiny-refiner", refiner_switch=0.5, **FAST)
    assert not np.array_equal(px(alone.images[0]), px(first.images[0]))
    assert np.array_equal(px(first.images[0]), px(again.images[0]))
    assert [e.step for e in events] == [1, 2, 3, 4] and {e.total for e in events} == {4}
    assert {e.stage for e in events} == {"generate", "refine"} and events[-1].stage == "refine"


def test_default_switch_is_0_8_and_the_plan_pins_the_refiner(rapi, refiner_models):
    plan = rapi.plan("a boat", refiner="tiny-refiner", **FAST)
    assert plan.refine.refiner_switch == 0.8
    assert plan.refine.refiner_sha256 == rapi.catalog.sha256(refiner_models.refiner_folder)


def test_single_file_refiner_gives_the_folder_refiners_pixels(rapi, handed):
    folder = handed[0]
    single = rapi.generate("a lighthouse at dusk", refiner="tiny-refiner-single", refiner_switch=0.5, **FAST)
    assert single.plan.refine.refiner_sha256 != folder.plan.refine.refiner_sha256
    assert np.abs(px(folder.images[0]).astype(int) - px(single.images[0]).astype(int)).max() <= 1


def test_refiner_with_hires_fix_and_with_a_long_prompt(rapi):
    few = {**FAST, "steps": 2}
    hires = rapi.generate("a red fox", refiner="tiny-refiner", refiner_switch=0.5, hr_scale=1.5, hr_denoise=0.5, **few)
    assert hires.images[0].size == (96, 96)
    long = rapi.generate("a red fox in the snow, " * 20, refiner="tiny-refiner", refiner_switch=0.5, **few)
    assert long.images[0].size == (64, 64)


def test_refiner_shares_the_bases_vae_and_text_encoder_and_loads_once(refiner_models, tmp_path, monkeypatch):
    from brushwork.facade import Brushwork
    from brushwork.models import loading

    calls: list[str] = []
    original = loading.load_pipeline

    def counting(path, family, **kwargs):
        calls.append(kwargs.get("variant", "base"))
        return original(path, family, **kwargs)

    monkeypatch.setattr(loading, "load_pipeline", counting)
    api = Brushwork(_settings(refiner_models, tmp_path))
    few = {**FAST, "steps": 2}
    first = api.generate("a cat", refiner="tiny-refiner", refiner_switch=0.5, **few)
    second = api.generate("a dog", refiner="tiny-refiner", refiner_switch=0.75, **{**few, "seed": 12})
    assert calls == ["base", "refiner"]
    assert api.engine.refiners.stats.loads == 1 and api.engine.refiners.stats.hits == 1
    base = api.engine.pipeline(second.plan)
    (refiner,) = api.engine.refiners._items.values()
    assert refiner.vae is base.vae and refiner.text_encoder_2 is base.text_encoder_2
    assert refiner.tokenizer_2 is base.tokenizer_2 and refiner.text_encoder is None
    assert type(refiner).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert first.plan.refine.refiner_sha256 == second.plan.refine.refiner_sha256


# ---------------------------------------------------------------- detection


def test_folder_and_single_file_refiners_are_recognised(refiner_models, tiny_models):
    from brushwork.models import offline_configs as oc
    from brushwork.models.loading import checkpoint_shapes, family_and_variant

    assert family_and_variant(refiner_models.refiner_folder) == ("sdxl", "refiner")
    assert family_and_variant(refiner_models.refiner_single) == ("sdxl", "refiner")
    assert family_and_variant(tiny_models.sdxl_folder) == ("sdxl", "base")
    assert family_and_variant(tiny_models.sdxl_single) == ("sdxl", "base")
    shapes = checkpoint_shapes(refiner_models.refiner_single)
    assert not any(k.startswith("conditioner.embedders.0.transformer.") for k in shapes)
    assert oc.detect_family(shapes) == "sdxl" and oc.detect_variant(shapes) == "refiner"
    assert oc.missing_components(shapes, "sdxl", "refiner") == []
    without_vae = {k: v for k, v in shapes.items() if not k.startswith("first_stage_model.")}
    assert oc.missing_components(without_vae, "sdxl", "refiner") == ["vae"]


def test_full_size_refiner_layout_fits_the_shipped_refiner_configs(tmp_path):
    import types

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from brushwork.models import offline_configs as oc
    from brushwork.testing.ldm_export import pipeline_to_ldm_state_dict

    folder = oc.shipped_config_dir("sdxl", "refiner")
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet/config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((folder / "vae/config.json").read_text()))
        encoder = CLIPTextModelWithProjection(CLIPTextConfig.from_pretrained(folder / "text_encoder_2"))
    state = pipeline_to_ldm_state_dict(types.SimpleNamespace(unet=unet, vae=vae, text_encoder=None,
                                                             text_encoder_2=encoder))
    shapes = {key: tuple(value.shape) for key, value in state.items()}
    # diffusers' own marker keys for the real refiner are present at full size
    assert oc.KEY_XL_REFINER in shapes and "conditioner.embedders.0.model.text_projection" in shapes
    assert shapes["model.diffusion_model.label_emb.0.0.weight"] == (1536, 2560)
    assert oc.detect_family(shapes) == "sdxl" and oc.detect_variant(shapes) == "refiner"
    oc.check_against_config(shapes, None, "sdxl", "refiner")
    with pytest.raises(ValueError, match="does not match"):
        oc.check_against_config(shapes, oc.shipped_config_dir("sdxl"), "sdxl", "base")
    built = oc.materialize_config_dir("sdxl", tmp_path, "refiner")
    index = json.loads((built / "model_index.json").read_text())
    assert built.name == "sdxl-refiner" and index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    assert index["text_encoder"] == [None, None] and index["requires_aesthetics_score"] is True
    assert (built / "tokenizer_2" / "vocab.json").is_file() and not (built / "tokenizer").exists()


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(("fields", "error", "field", "message"), [
    ({"refiner": "nope"}, NotFound, "refiner", "unknown SDXL refiner 'nope'; valid: tiny-refiner, tiny-refiner-single"),
    ({"refiner": "tiny-sdxl"}, InvalidRequest, "refiner",
     "'tiny-sdxl' is not an SDXL refiner; refiners: tiny-refiner, tiny-refiner-single"),
    ({"refiner": "tiny-refiner", "model": "tiny-sd15"}, InvalidRequest, "refiner", "is an SD 1.5 model"),
    ({"refiner": "tiny-refiner", "init_image": "picture"}, InvalidRequest, "refiner", "txt2img only, not img2img"),
    ({"refiner": "tiny-refiner", "refiner_switch": 0}, InvalidRequest, "refiner_switch", "greater than 0"),
    ({"refiner": "tiny-refiner", "refiner_switch": 1.5}, InvalidRequest, "refiner_switch", "at most 1"),
    ({"refiner_switch": 0.5}, InvalidRequest, "refiner", "needs a refiner"),
    ({"model": "tiny-refiner"}, InvalidRequest, "model", "is an SDXL refiner: it only finishes images"),
])
def test_bad_refiner_requests_are_one_line_field_errors(rapi, fields, error, field, message):
    if fields.get("init_image") == "picture":
        fields = {**fields, "init_image": picture()}
    with pytest.raises(error) as info:
        rapi.generate("a fox", **{**FAST, **fields})
    assert info.value.field == field and message in info.value.message and "\n" not in str(info.value)


def test_a_plan_naming_a_missing_refiner_is_refused_before_running(rapi, handed, refiner_models, tmp_path):
    from brushwork.engine.checks import check_plan
    from brushwork.facade import Brushwork
    from brushwork.models.catalog import ModelCatalog

    plan = handed[0].plan
    check_plan(plan, rapi.settings.limits, rapi.catalog, rapi.assets)  # installed here: fine
    elsewhere = Brushwork(_settings(refiner_models, tmp_path))
    other = plan.model_copy(update={"refine": plan.refine.model_copy(update={"refiner": "gone"})})
    with pytest.raises(InvalidRequest, match="^refiner: 'gone' is not installed here"):
        check_plan(other, elsewhere.settings.limits, ModelCatalog(elsewhere.settings), elsewhere.assets)


# ---------------------------------------------------------------- metadata


def test_refiner_metadata_round_trips_as_a1111_writes_it(handed, tmp_path):
    from brushwork.plan import AdapterRef
    from brushwork.post.metadata import (
        PLAN_KEY,
        a1111_parameters,
        parse_a1111_parameters,
        png_info,
        read_hash_list,
        read_plan,
        read_refiner,
    )

    result = handed[0]
    plan = result.plan
    fields = parse_a1111_parameters(a1111_parameters(plan))
    assert fields["Refiner"] == f"tiny-refiner [{plan.refine.refiner_sha256[:10]}]"
    assert fields["Refiner switch at"] == "0.5"
    info = read_refiner(fields)
    assert (info.name, info.short_hash, info.switch) == ("tiny-refiner", plan.refine.refiner_sha256[:10], 0.5)
    path = tmp_path / "x.png"
    result.images[0].save(path, pnginfo=png_info(plan))
    assert read_plan(path).refine == plan.refine
    # switch 1.0 never hands over: no Refiner fields, as A1111
    unused = plan.model_copy(update={"refine": plan.refine.model_copy(update={"refiner_switch": 1.0})})
    assert "Refiner" not in parse_a1111_parameters(a1111_parameters(unused))
    # textual-inversion embeddings: A1111's quoted `TI hashes`, names without ':' or ','
    sha = "ab" * 32
    with_ti = plan.model_copy(update={"embeddings": (AdapterRef(name="easy:neg", sha256=sha, short_hash=sha[:12]),
                                                     AdapterRef(name="style", sha256=sha, short_hash="0123456789ab"))})
    text = a1111_parameters(with_ti)
    assert f'TI hashes: "easyneg: {sha[:12]}, style: 0123456789ab"' in text
    assert read_hash_list(parse_a1111_parameters(text), "TI hashes") == {"easyneg": sha[:12], "style": "0123456789ab"}
    assert PLAN_KEY not in text


def test_reads_an_a1111_refiner_infotext():
    from brushwork.post.metadata import parse_a1111_parameters, read_refiner

    text = ("a castle\nNegative prompt: blurry\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
            "Seed: 1, Size: 1024x1024, Model hash: 31e35c80fc, Model: sd_xl_base_1.0, "
            "Refiner: sd_xl_refiner_1.0 [7440042bbd], Refiner switch at: 0.8, Version: v1.10.1")
    info = read_refiner(parse_a1111_parameters(text))
    assert (info.name, info.short_hash, info.switch) == ("sd_xl_refiner_1.0", "7440042bbd", 0.8)
    assert read_refiner(parse_a1111_parameters(text.replace("Refiner", "Other"))) is None


# ---------------------------------------------------------------- CLI


def test_cli_generate_with_a_refiner_and_its_bad_inputs(refiner_models, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from brushwork.cli.main import app
    from brushwork.post.metadata import (
        PARAMETERS_KEY,
        parse_a1111_parameters,
        read_text_chunks,
    )

    monkeypatch.setenv("BRUSHWORK_HOME", str(refiner_models.home))
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(refiner_models.models_dir))
    monkeypatch.setenv("BRUSHWORK_STYLES_DIR", str(tmp_path / "styles"))
    monkeypatch.setenv("BRUSHWORK_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("COLUMNS", "250")
    runner = CliRunner()

    def cli(*args: object):
        return runner.invoke(app, [str(a) for a in args])

    fast = ["--model", "tiny-sdxl", "--seed", "3", "--steps", "2", "--size", "64x64"]
    result = cli("generate", "a red fox", *fast, "--refiner", "tiny-refiner", "--refiner-switch", "0.5",
                 "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    png = Path([line for line in result.output.splitlines() if line.strip().endswith(".png")][-1].strip())
    fields = parse_a1111_parameters(read_text_chunks(png)[PARAMETERS_KEY])
    assert fields["Refiner"].startswith("tiny-refiner [") and fields["Refiner switch at"] == "0.5"
    shown = cli("info", png)
    assert shown.exit_code == 0 and "Refiner: tiny-refiner [" in shown.output and "Refiner switch at: 0.5" in shown.output
    for bad, message in ((["--refiner", "tiny-refiner", "--refiner-switch", "1.5"], "refiner_switch"),
                         (["--refiner", "nope"], "unknown SDXL refiner 'nope'"),
                         (["--refiner", "tiny-sdxl"], "is not an SDXL refiner")):
        failed = cli("generate", "a red fox", *fast, *bad, "-o", tmp_path / "o")
        assert failed.exit_code == 2, failed.output
        assert message in failed.output and "Traceback" not in failed.output
