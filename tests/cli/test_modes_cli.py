"""Every image mode from the command line, and every bad image input as one `error:` line with exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.post.metadata import (
    PARAMETERS_KEY,
    parse_a1111_parameters,
    read_text_chunks,
)
from brushwork.testing.images import picture, square_mask

FAST = ["--model", "tiny-sd15", "--seed", "3", "--steps", "2", "--size", "64x64"]


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {"photo": tmp_path / "photo.png", "mask": tmp_path / "mask.png", "small_mask": tmp_path / "small.png"}
    picture().save(paths["photo"])
    square_mask().save(paths["mask"])
    square_mask((32, 32)).save(paths["small_mask"])
    return paths


def _png(output: str) -> Path:
    lines = [line for line in output.splitlines() if line.endswith(".png")]
    assert lines, output
    return Path(lines[-1].strip())


def _fields(path: Path) -> dict[str, str]:
    return parse_a1111_parameters(read_text_chunks(path)[PARAMETERS_KEY])


@pytest.mark.parametrize(("args", "size", "keys"), [
    (["--init", "{photo}", "--strength", "0.5", "--resize-mode", "crop_and_resize"], (64, 64),
     {"Denoising strength": "0.5", "Resize mode": "Crop and resize"}),
    (["--init", "{photo}", "--mask", "{mask}", "--mask-blur", "2", "--inpaint-area", "masked",
      "--inpaint-padding", "8", "--masked-content", "fill"], (64, 64),
     {"Mask blur": "2", "Inpaint area": "Only masked", "Masked area padding": "8", "Masked content": "fill"}),
    (["--init", "{photo}", "--outpaint", "0,32,0,0", "--size", None], (96, 64),
     {"Outpaint": "left 0, right 32, up 0, down 0"}),
    (["--control", "tinycanny:{photo}:0.8:0:0.5", "--canny", "50,150"], (64, 64),
     {"ControlNet 0": None}),
    (["--hires", "1.5", "--hires-steps", "2", "--hires-upscaler", "tiny2x"], (96, 96),
     {"Hires upscale": "1.5", "Hires upscaler": "tiny2x"}),
    (["--upscale", "tiny2x:2", "--upscale", "Lanczos:1.5", "--resize-to", "100x80"], (100, 80),
     {"Postprocess upscaler": "tiny2x", "Postprocess upscaler 2": "Lanczos"}),
])
def test_each_mode_from_the_cli_writes_its_image_and_a1111_keys(cli, inputs, tmp_path, args, size, keys):
    fast = FAST if "--size" not in args else [a for a in FAST if a not in ("--size", "64x64")]
    args = [a.format(**inputs) for a in args if a not in ("--size", None)]
    result = cli("generate", "a red fox", *fast, *args, "-o", tmp_path / "o")
    assert result.exit_code == 0, result.output
    path = _png(result.output)
    assert Image.open(path).size == size
    fields = _fields(path)
    for key, value in keys.items():
        assert key in fields, (key, fields)
        if value is not None:
            assert fields[key] == value
    replayed = cli("replay", path, "-o", tmp_path / "again")
    assert replayed.exit_code == 0, replayed.output
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(_png(replayed.output))))


def test_controlnet_text_names_module_weight_and_thresholds(cli, inputs, tmp_path):
    result = cli("generate", "a red fox", *FAST, "--control", f"tinycanny:{inputs['photo']}:0.8:0:0.5",
                 "--canny", "50,150", "-o", tmp_path)
    value = _fields(_png(result.output))["ControlNet 0"]
    assert value.startswith("Module: canny, Model: tinycanny [") and "Weight: 0.8" in value
    assert "Guidance End: 0.5" in value and "Threshold A: 50, Threshold B: 150" in value


def test_model_given_by_path_is_hashed_and_replays(cli, tiny_models, tmp_path):
    result = cli("generate", "a red fox", "--model", tiny_models.sd15_single, "--seed", "1", "--steps", "1",
                 "--size", "64x64", "-o", tmp_path)
    # a tiny single file does not have SD 1.5's shapes: refused up front, naming the mismatch (a usage error)
    assert result.exit_code == 2 and "error: model: " in result.output, result.output
    assert "text encoder width 32 does not match" in result.output
    folder = cli("generate", "a red fox", "--model", tiny_models.sd15_folder, "--seed", "1", "--steps", "1",
                 "--size", "64x64", "-o", tmp_path)
    assert folder.exit_code == 0, folder.output
    fields = _fields(_png(folder.output))
    assert fields["Model"] == "tiny-sd15" and len(fields["Model hash"]) == 10
    replayed = cli("replay", _png(folder.output), "-o", tmp_path / "r")
    assert replayed.exit_code == 0, replayed.output


@pytest.mark.parametrize(("args", "fragment"), [
    (["--init", "{missing}"], "init_image: "),
    (["--init", "{folder}"], "init_image: "),
    (["--init", "{text}"], "init_image: "),
    (["--init", "{photo}", "--mask", "{small_mask}"], "mask_image: the mask is 32x32 but the init image is 64x64"),
    (["--init", "{photo}", "--strength", "1.5"], "strength: must be between 0 and 1"),
    (["--strength", "0.5"], "strength: needs init_image"),
    (["--mask", "{mask}"], "mask_image: needs an init image"),
    (["--init", "{photo}", "--resize-mode", "stretch"], "resize_mode: "),
    (["--init", "{photo}", "--outpaint", "1,2"], "outpaint: expected LEFT,RIGHT,UP,DOWN"),
    (["--control", "nosuch:{photo}"], "control: unknown ControlNet 'nosuch'; valid: tinycanny"),
    (["--control", "tinycanny:{photo}:abc"], "control: after the image"),
    (["--canny", "50,150"], "canny: applies to --control images"),
    (["--upscale", "Lanczos:"], "upscale: expected NAME or NAME:SCALE"),
    (["--upscale", "Lanczos:nan"], "upscale: expected a finite number"),
    (["--init", "{photo}", "--outpaint", "0,0,0,0"], "outpaint: extend at least one side"),
    (["--init", "{photo}", "--mask", "{mask}", "--outpaint", "0,8,0,0"], "mask_image: outpainting makes its own mask"),
    (["--init", "{photo}", "--mask", "{black}"], "mask_image: marks nothing to repaint"),
    (["--init", "{tiny}", "NOSIZE"], "init_image: is 20x20"),
    (["--model", ""], "model: must not be empty"),
    (["--model", "{text}"], "model: "),
    (["-o", "{text}"], "output: "),
    (["--control", "tinycanny"], "control: expected MODEL:IMAGE"),
    (["--control", "tinycanny:{photo}:2:0"], "control: give SCALE, or SCALE:START:END"),
    (["--control", "tinycanny:{photo}:0.5:0.8:0.2"], "control: control 1 (tinycanny): start (0.8) must be before end"),
    (["--upscale", "nosuch:2"], "unknown upscaler 'nosuch'; valid: Lanczos, tiny2x"),
    (["--upscale", "Lanczos:99"], "upscale: the chain upscales 99×; the limit is 4×"),
    (["--upscale", "Lanczos:-1"], "upscale: #1 scale: must be greater than 0, got -1"),
    (["--hires", "9"], "hr_scale: must be greater than 1 and at most 4, got 9"),
    (["--init", "{photo}", "--hires", "2"], "hr_scale: hires fix applies to txt2img only"),
    (["--init", "{bomb}"], "init_image: "),
    (["-o", ""], "output: must not be empty"),
    (["--clip-skip", "5"], "clip_skip: must be between 1 and 4 for model 'tiny-sd15'"),
    (["--seed", "4294967295", "--batch", "2"], "seed: seed + batch_size - 1 must be at most 4294967295"),
])
def test_bad_image_input_is_one_line_exit_2_nothing_written(cli, inputs, tmp_path, args, fragment):
    (tmp_path / "text.png").write_text("not an image")
    (tmp_path / "dir.png").mkdir()
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # small file, 400 megapixels when decoded
    Image.new("L", (64, 64)).save(tmp_path / "black.png")
    picture((20, 20)).save(tmp_path / "tiny.png")
    names = {**inputs, "missing": tmp_path / "nope.png", "folder": tmp_path / "dir.png", "text": tmp_path / "text.png",
             "bomb": bomb, "black": tmp_path / "black.png", "tiny": tmp_path / "tiny.png"}
    out = tmp_path / "o"
    fast = [a for a in FAST if a not in ("--size", "64x64")] if "NOSIZE" in args else FAST
    result = cli("generate", "a red fox", *fast, *[a.format(**names) for a in args if a != "NOSIZE"],
                 *(["-o", out] if "-o" not in args else []))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], lines
    assert not list(out.glob("*.png")) if out.exists() else True


def test_output_folder_expands_the_home_tilde(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    result = cli("generate", "a red fox", *FAST, "-o", "~/pictures")
    assert result.exit_code == 0, result.output
    assert _png(result.output).parent == tmp_path / "home" / "pictures"


def test_help_shows_flags_without_a_value_placeholder(monkeypatch, capsys):
    from brushwork.cli.main import command

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("BRUSHWORK_LIMITS__MAX_STEPS", "80")  # help shows this deployment's limits
    outputs = {}
    for args in (["--help"], ["generate", "--help"], ["styles", "--help"], ["info", "--help"]):
        command()(args, standalone_mode=False)
        outputs[args[0]] = capsys.readouterr().out
        assert "Usage:" in outputs[args[0]] and "<bool>" not in outputs[args[0]], outputs[args[0]]
    assert "--invert-mask" in outputs["generate"] and "Denoising steps, 1-80 (the limits.max_steps" in outputs["generate"]
    assert "{max_" not in outputs["generate"]
