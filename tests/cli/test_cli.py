"""The CLI as a user runs it: outputs, metadata, replay, styles folder, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.post.metadata import PARAMETERS_KEY, read_text_chunks


def _png(output: str) -> Path:
    lines = [line for line in output.splitlines() if line.endswith(".png")]
    assert lines, output
    return Path(lines[-1].strip())


def test_the_issue_acceptance_scenario(cli, tmp_path: Path):
    args = ["generate", "midnight blue RX7 on a mountain road", "--style", "cars", "--type", "rx7",
            "--model", "demo", "--seed", "7", "-o", str(tmp_path / "cars")]
    first = cli(*args)
    assert first.exit_code == 0, first.output
    path = _png(first.output)
    parameters = read_text_chunks(path)[PARAMETERS_KEY]
    assert "Seed: 7," in parameters and "Model: demo" in parameters and "midnight blue RX7" in parameters
    assert "images are noise" in parameters

    second = cli(*args)
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(_png(second.output))))

    replayed = cli("replay", str(path), "-o", str(tmp_path / "replay"))
    assert replayed.exit_code == 0, replayed.output
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(_png(replayed.output))))

    info = cli("info", str(path))
    assert info.exit_code == 0 and "Seed: 7" in info.output and "brushwork replay" in info.output
    as_json = cli("info", str(path), "--json")
    assert '"seeds": [\n    7\n  ]' in as_json.output


def test_batch_and_overrides(cli, tmp_path: Path):
    result = cli("generate", "a cat", "--model", "tiny-sd15", "--seed", "5", "--batch", "2", "--size", "64x128",
                 "--steps", "2", "--sampler", "euler_a", "--cfg", "5", "-o", str(tmp_path))
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["00000-5-general.png", "00001-6-general.png"]
    image = Image.open(tmp_path / names[1])
    assert image.size == (64, 128)
    text = read_text_chunks(tmp_path / names[1])[PARAMETERS_KEY]
    assert "Steps: 2, Sampler: Euler a, Schedule type: Automatic, CFG scale: 5, Seed: 6" in text


def test_styles_lists_builtins_and_a_dropped_in_file(cli, tmp_path: Path):
    before = cli("styles")
    assert before.exit_code == 0
    assert "cars" in before.output and "rx7" in before.output and "watercolor" in before.output
    assert "mystyle" not in before.output
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "mystyle.toml").write_text('name = "mystyle"\nkeywords = ["mine"]\nmodel = "demo"\n'
                                         'prompt = "{prompt}, mine"\n')
    (styles / "oops.py").write_text("def broken(:\n")
    after = cli("styles")
    assert after.exit_code == 0
    assert "mystyle" in after.output
    assert "oops.py" in after.output and "SyntaxError" in after.output  # reported, not fatal
    generated = cli("generate", "something of mine", "--steps", "1", "--size", "64x64", "--seed", "1",
                    "-o", str(tmp_path / "o"))
    assert generated.exit_code == 0, generated.output
    assert "-mystyle.png" in generated.output  # keyword routing picked the new style


def test_models_lists_demo_and_missing_models(cli):
    result = cli("models")
    assert result.exit_code == 0
    assert "demo" in result.output and "noise" in result.output
    assert "dreamshaper" in result.output and "tiny-sd15" in result.output


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["generate", "x", "--size", "500x512"], "width: must be a multiple of 8"),
        (["generate", "x", "--size", "big"], "size: expected WIDTHxHEIGHT"),
        (["generate", "x", "--style", "nope"], "unknown style 'nope'; valid: anime"),
        (["generate", "x", "--style", "cars", "--type", "beetle"], "valid: f1, rx7, sedan, speedtail"),
        (["generate", "x", "--sampler", "bogus"], "unknown sampler 'bogus'"),
        (["generate", "x", "--model", "nosuch"], "unknown model 'nosuch'"),
        (["generate", "x", "--steps", "0"], "steps: must be between 1 and 150"),
        (["generate", "x", "--seed", "4294967296"], "seed: must be between 0 and 4294967295"),
        (["generate", "x", "--batch", "20"], "batch_size: must be between 1 and 16"),
        (["info", "missing.png"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, args, fragment):
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert fragment in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_missing_model_is_a_runtime_failure_with_instructions(cli):
    result = cli("generate", "x", "--model", "dreamshaper")
    assert result.exit_code == 1
    assert "dreamshaper_8.safetensors" in result.output


def test_real_process_exit_codes_and_no_traceback(tmp_path: Path):
    env = {**os.environ, "BRUSHWORK_HOME": str(tmp_path)}
    bad = subprocess.run([sys.executable, "-m", "brushwork", "generate", "x", "--cfg", "99"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: cfg: must be between 0 and 30, got 99"]
    for args, expected in (
        (["generate", "x", "--steps", "abc"], "error: steps: expected a whole number"),
        (["generate", "x", "--bogus"], "error: No such option: --bogus"),
        (["generate"], "error: prompt: is required"),
    ):
        usage = subprocess.run([sys.executable, "-m", "brushwork", *args], capture_output=True, text=True,
                               env=env, timeout=120)
        assert usage.returncode == 2, args
        lines = usage.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), usage.stderr
    version = subprocess.run([sys.executable, "-m", "brushwork", "--version"], capture_output=True, text=True,
                             env=env, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("brushwork ")


def test_config_option_reads_a_settings_file(cli, tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent('''
        [limits]
        max_size = 256
    '''))
    result = cli("--config", str(config), "generate", "x", "--size", "512x512")
    assert result.exit_code == 2 and "between 64 and 256" in result.output
    missing = cli("--config", str(tmp_path / "nope.toml"), "styles")
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_tampered_plan_in_a_png_is_bad_input(cli, tmp_path: Path):
    from PIL.PngImagePlugin import PngInfo

    made = cli("generate", "a cat", "--model", "tiny-sd15", "--seed", "1", "--steps", "1", "--size", "64x64",
               "-o", str(tmp_path))
    path = _png(made.output)
    chunks = read_text_chunks(path)
    info = PngInfo()
    info.add_itxt("brushwork-plan", chunks["brushwork-plan"].replace('"width":64', '"width":500'))
    Image.open(path).save(tmp_path / "tampered.png", pnginfo=info)
    result = cli("replay", str(tmp_path / "tampered.png"))
    assert result.exit_code == 2 and "width" in result.output and "multiple of 8" in result.output


def test_unwritable_output_folder_fails_before_generating(cli, tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    result = cli("generate", "a cat", "--model", "tiny-sd15", "--steps", "1", "-o", str(blocker / "sub"))
    assert result.exit_code == 2 and "output: cannot create folder" in " ".join(result.output.split())


def test_ctrl_c_is_a_short_message_and_exit_130():
    import typer

    from brushwork.cli.common import handle_errors

    @handle_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        interrupted()
    assert info.value.exit_code == 130


def test_styles_long_shows_descriptions_and_sources(cli, tmp_path: Path):
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "mine.toml").write_text('name = "mine"\ndescription = "my own look"\nmodel = "demo"\n'
                                      'prompt = "{prompt}"\n')
    result = cli("styles", "--long")
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "my own look" in text and "mine.toml" in text  # description and where the style came from
    assert "rx7 (Mazda RX-7 FD" in text


def test_no_arguments_prints_help_once():
    import subprocess
    import sys

    shown = subprocess.run([sys.executable, "-m", "brushwork"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and shown.stdout.count("Usage") == 1
