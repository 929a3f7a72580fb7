"""`styles`, `models`, `info` with outside input: escaped text, kept layouts, unusable files marked."""

from __future__ import annotations

import json
import struct
import textwrap
import zlib
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from brushwork.cli.main import app

CONTROL = ("\x1b", "\x07", "\x9b", "\x08", "\r")


def _no_control(text: str) -> None:
    found = [c for c in CONTROL if c in text]
    assert not found, f"control characters reached the terminal: {found}"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# ---------------------------------------------------------------- settings


def test_a_bad_setting_is_exit_2_in_one_line(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("BRUSHWORK_DEVICE", "tpu")
    result = cli("styles")
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: setting device: 'tpu' is not a device; allowed:")
    monkeypatch.delenv("BRUSHWORK_DEVICE")
    monkeypatch.setenv("BRUSHWORK_CONFIG", str(tmp_path / "nope.toml"))
    result = cli("models")
    assert result.exit_code == 2 and "does not exist" in result.output and "Traceback" not in result.output


def test_a_config_file_that_is_not_utf8_is_exit_2(cli, tmp_path: Path):
    config = tmp_path / "c.toml"
    config.write_bytes(b'output_dir = "caf\xe9"\n')
    result = cli("--config", str(config), "styles")
    assert result.exit_code == 2 and "not UTF-8" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- info


def test_info_escapes_control_characters_in_parameters(cli, tmp_path: Path):
    info = PngInfo()
    info.add_itxt("parameters", "a cat \x1b[2J\x1b]0;pwned\x07 \x9b31m back\x08\r\nSteps: 20, Seed: 1")
    path = tmp_path / "evil.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    result = cli("info", str(path))
    assert result.exit_code == 0, result.output
    _no_control(result.output)
    assert "a cat \\x1b[2J\\x1b]0;pwned\\x07 \\x9b31m back\\x08\\x0d" in result.output
    assert "Steps: 20, Seed: 1" in result.output


def test_info_reads_parameters_written_after_the_pixels(cli, tmp_path: Path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    data = plain.read_bytes()
    late = _chunk(b"tEXt", b"parameters\0late prompt\nSteps: 3, Seed: 9")
    path = tmp_path / "late.png"
    path.write_bytes(data[:-12] + late + data[-12:])  # just before IEND
    result = cli("info", str(path))
    assert result.exit_code == 0, result.output
    assert "late prompt" in result.output and "Seed: 9" in result.output


def test_info_refuses_a_text_bomb_in_one_line(cli, tmp_path: Path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    data = plain.read_bytes()
    bomb = _chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"A" * (16 << 20)))
    path = tmp_path / "bomb.png"
    path.write_bytes(data[:-12] + bomb + data[-12:])
    result = cli("info", str(path))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "bomb.png: text chunk 'parameters' is larger than" in lines[0]


def test_info_escapes_plan_fields(cli, tmp_path: Path):
    made = cli("generate", "a cat", "--model", "demo", "--seed", "1", "--steps", "1", "--size", "64x64",
               "-o", str(tmp_path / "made"))
    assert made.exit_code == 0, made.output
    source = next((tmp_path / "made").glob("*.png"))
    with Image.open(source) as img:
        plan = json.loads(img.info["brushwork-plan"])
        plan["model"]["name"] = "demo\x1b[2J"
        plan["prompt"] = "a cat \x9b2J \x1b[31m"
        info = PngInfo()
        info.add_itxt("brushwork-plan", json.dumps(plan))
        img.save(tmp_path / "tampered.png", pnginfo=info)
    shown = cli("info", str(tmp_path / "tampered.png"))
    _no_control(shown.output)
    if shown.exit_code == 0:  # the plan is read: its fields are shown escaped
        assert "demo\\x1b[2J" in shown.output
    else:  # refused as a bad plan: the message quoting it is escaped too
        assert shown.exit_code == 2
    as_json = cli("info", str(tmp_path / "tampered.png"), "--json")
    _no_control(as_json.output)
    if as_json.exit_code == 0:
        assert json.loads(as_json.stdout)["prompt"] == "a cat \x9b2J \x1b[31m"  # still valid, exact JSON


# ---------------------------------------------------------------- styles


def test_a_failing_style_keeps_the_table_columns(cli, tmp_path: Path):
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "broken.py").write_text(textwrap.dedent('''
        from brushwork.styles.spec import style

        @style(name="broken", keywords=["kaput"], description="fails")
        def broken(prompt, **options):
            raise RuntimeError("no recipe today\\nsecond line [red]markup[/red] \\x1b[2J")
    '''))
    result = CliRunner().invoke(app, ["styles"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if " broken " in line)
    assert "(error)" in row and "kaput" in row  # the keywords column is still where it belongs
    assert "no recipe today" not in result.stdout
    note = next(line for line in result.stderr.splitlines() if "broken" in line)
    assert "RuntimeError: no recipe today second line [red]markup[/red] \\x1b[2J" in note
    _no_control(result.output)
    long = CliRunner().invoke(app, ["styles", "--long"])
    assert long.exit_code == 0 and "broken  model (error)" in long.stdout


def test_style_text_from_a_user_file_is_escaped(cli, tmp_path: Path):
    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "sneaky.toml").write_text(
        'name = "sneaky"\ndescription = "looks [bold]fine[/bold] \\u001b[2J"\nkeywords = ["sly\\u001b[31m"]\n'
        'model = "demo"\nprompt = "{prompt}"\n', encoding="utf-8")
    table = CliRunner().invoke(app, ["styles"])
    long = CliRunner().invoke(app, ["styles", "--long"])
    for result in (table, long):
        assert result.exit_code == 0, result.output
        _no_control(result.output)
    assert "sly\\x1b[31m" in table.stdout
    assert "looks [bold]fine[/bold] \\x1b[2J" in long.stdout


# ---------------------------------------------------------------- models


def test_models_marks_files_that_cannot_load(cli, tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    models = tmp_path / "models"
    checkpoints = models / "checkpoints"
    checkpoints.mkdir(parents=True)
    os.symlink(tiny_models.sd15_single, checkpoints / "good.safetensors")
    (checkpoints / "old.ckpt").write_bytes(b"\x80\x02pickle")
    (checkpoints / "junk.safetensors").write_bytes(bytes(range(256)) * 4)
    os.symlink(tiny_models.lora, checkpoints / "stray-lora.safetensors")
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(models))

    result = cli("models")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "yes" in rows["good"]
    assert "no (pickle: set BRUSHWORK_ALLOW_PICKLE=1 or convert)" in rows["old"]
    assert "no (unreadable: not a readable .safetensors file" in rows["junk"]
    assert "no (unsupported: a LoRA" in rows["stray-lora"]

    monkeypatch.setenv("BRUSHWORK_ALLOW_PICKLE", "1")
    allowed = cli("models")
    rows = {line.split("│")[1].strip(): line for line in allowed.stdout.splitlines() if line.count("│") > 3}
    assert "pickle" not in rows["old"] and "yes" in rows["old"]
