"""`brushwork upscale` as a user runs it: output PNG, kept metadata, numbering, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from PIL.PngImagePlugin import PngInfo
from typer.testing import CliRunner

from brushwork.cli.upscale import upscale
from brushwork.post.metadata import read_text_chunks
from brushwork.testing.upscalers import save_tiny_esrgan

PARAMETERS = "a red fox\nNegative prompt: blurry\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 7, Size: 40x24"
PLAN = '{"prompt": "a red fox", "seeds": [7]}'


def _app() -> typer.Typer:
    """The command registered as `brushwork` registers it: `app.command()(upscale)` under a callback."""
    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def root(ctx: typer.Context) -> None:
        ctx.obj = None

    app.command()(upscale)
    return app


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    models = tmp_path_factory.mktemp("models")
    save_tiny_esrgan(models / "upscalers" / "tiny-x2.safetensors", scale=2)
    save_tiny_esrgan(models / "upscalers" / "old-x2.pth", scale=2)
    return models


@pytest.fixture
def cli(model_files: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(model_files))
    monkeypatch.setenv("BRUSHWORK_OUTPUT_DIR", str(tmp_path / "out"))
    runner = CliRunner()
    app = _app()
    return lambda *args: runner.invoke(app, ["upscale", *map(str, args)])


@pytest.fixture
def source(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (24, 40, 3), dtype=np.uint8))
    info = PngInfo()
    info.add_itxt("parameters", PARAMETERS)
    info.add_itxt("brushwork-plan", PLAN)
    path = tmp_path / "00007-7-fox.png"
    image.save(path, pnginfo=info)
    return path


def _written(output: str) -> Path:
    lines = [line.strip() for line in output.splitlines() if line.strip().endswith(".png")]
    assert lines, output
    return Path(lines[-1])


def test_upscale_writes_a_numbered_png_keeping_and_extending_metadata(cli, source: Path, tmp_path: Path):
    first = cli(source, "-u", "tiny-x2")
    assert first.exit_code == 0, first.output
    path = _written(first.output)
    assert path.parent == tmp_path / "out" and path.name == "00000-00007-7-fox-x2.png"
    assert Image.open(path).size == (80, 48)
    chunks = read_text_chunks(path)
    assert chunks["parameters"] == PARAMETERS + ", Postprocess upscale by: 2, Postprocess upscaler: tiny-x2"
    assert chunks["brushwork-plan"] == PLAN
    assert chunks["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: tiny-x2"
    assert "40x24 → 80x48" in first.output and "ESRGAN 2x" in first.output

    again = cli(source, "-u", "tiny-x2", "--scale", "1.5", "--tile", "32")
    assert again.exit_code == 0, again.output
    second = _written(again.output)
    assert second.name == "00001-00007-7-fox-x1.5.png" and path.exists()  # a new file, nothing overwritten
    assert Image.open(second).size == (60, 36)
    assert read_text_chunks(second)["parameters"].endswith("Postprocess upscale by: 1.5, Postprocess upscaler: tiny-x2")


def test_lanczos_needs_no_model_and_alpha_survives(cli, tmp_path: Path):
    rgba = np.zeros((10, 16, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    rgba[:, :8, 3] = 0  # left half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "cut.png")
    result = cli(tmp_path / "cut.png", "-u", "lanczos", "--scale", "3", "-o", tmp_path / "mine")
    assert result.exit_code == 0, result.output
    out = Image.open(_written(result.output))
    assert out.size == (48, 30) and out.mode == "RGBA"
    alpha = np.asarray(out.getchannel("A"))
    assert alpha[:, :12].max() == 0 and alpha[:, 36:].min() == 255  # away from the edge (Lanczos rings)
    assert "parameters" not in read_text_chunks(_written(result.output))  # none to keep


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["missing.png", "-u", "tiny-x2"], "error: image: missing.png does not exist"),
        (["{src}", "-u", "4x-nothing"],
         "error: upscaler: unknown upscaler '4x-nothing'; valid: Lanczos, None, old-x2, tiny-x2"),
        (["{src}"],
         "error: upscaler: choose one with --upscaler/-u; installed: old-x2, tiny-x2; built in: Lanczos, None"),
        (["{src}", "-u", "tiny-x2", "--scale", "0"], "error: scale: scale must be greater than 0, got 0"),
        (["{src}", "-u", "tiny-x2", "--scale", "-2"], "error: scale: scale must be greater than 0, got -2"),
        (["{src}", "-u", "tiny-x2", "--scale", "5"], "error: scale: scale 5 is above the limit of 4"),
        (["{src}", "-u", "old-x2"], "error: upscaler: old-x2.pth is a pickle file"),
        (["{src}", "-u", "tiny-x2", "--tile", "8"], "error: tile: tile size must be at least 32 pixels, got 8"),
        (["{src}", "-u", "None", "--scale", "2"], "error: scale: upscaler 'None' leaves the image as it is"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_2(cli, source: Path, tmp_path: Path, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    result = cli(*[str(source) if a == "{src}" else a for a in args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(expected), result.output
    assert not (tmp_path / "out").exists()  # nothing written


def test_output_size_and_input_limits(cli, source: Path, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("BRUSHWORK_LIMITS__MIN_SIZE", "16")
    monkeypatch.setenv("BRUSHWORK_LIMITS__MAX_SIZE", "32")  # 32 × max_upscale 4 = 128 a side
    too_big = cli(source, "-u", "Lanczos", "--scale", "4")
    assert too_big.exit_code == 2
    assert "error: scale: 40x24 × 4 = 160x96, larger than 128 pixels a side" in too_big.output
    monkeypatch.delenv("BRUSHWORK_LIMITS__MAX_SIZE")
    monkeypatch.setenv("BRUSHWORK_LIMITS__MAX_IMAGE_PIXELS", str(64 * 64))
    Image.new("RGB", (100, 100)).save(tmp_path / "large.png")
    refused = cli(tmp_path / "large.png", "-u", "Lanczos")
    assert refused.exit_code == 2 and "100x100 = 10000 pixels; the most allowed is 4096" in refused.output
    (tmp_path / "fake.png").write_bytes(b"not an image at all")
    fake = cli(tmp_path / "fake.png", "-u", "Lanczos")
    assert fake.exit_code == 2 and "is not a PNG, JPEG or WebP image" in fake.output
