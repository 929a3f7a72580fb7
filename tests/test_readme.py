"""The README's promises: its set-up commands are what CI runs, its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_second_setup_command_is_what_ci_runs():
    first, second = _code_blocks("bash")[:2]
    assert "--model demo" in first and "torch==2.14.1 torchvision==0.29.1" in first
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line and not line.startswith(("#", "set ", "cd "))]
    assert ci_lines == [second.strip()]


def test_python_api_example_runs(tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("BRUSHWORK_HOME", str(tiny_models.home))
    monkeypatch.setenv("BRUSHWORK_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("BRUSHWORK_STYLES_DIR", str(tmp_path / "styles"))
    marker = README.index("<!-- tested by tests/test_readme.py -->")
    example = re.search(r"```python\n(.*?)```", README[marker:], flags=re.S).group(1)
    example = example.replace('seed=7)', 'seed=7, steps=3, width=128, height=128)')  # keep the test fast
    namespace: dict[str, object] = {}
    exec(compile(example, "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    assert "cars DPM++ 2M Karras (7,)" in out and "step 3/3" in out
    assert np.array_equal(np.asarray(namespace["image"]), np.asarray(namespace["again"].images[0]))
    assert Path(namespace["paths"][0]).parent == tmp_path / "out"


def _mode_commands() -> list[list[str]]:
    import shlex

    start = README.index("## Image modes")
    section = README[start:README.index("\n## ", start + 1)]
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            if line.startswith(".venv/bin/brushwork "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_image_mode_commands_run_as_written(tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from typer.testing import CliRunner

    from brushwork.cli.main import app

    commands = _mode_commands()
    assert commands[0] == ["demo-files"] and len(commands) >= 10
    assert {c[0] for c in commands} == {"demo-files", "generate", "upscale"}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BRUSHWORK_HOME", str(tiny_models.home))  # the demo model is built there once
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("BRUSHWORK_STYLES_DIR", str(tmp_path / "styles"))
    runner = CliRunner()
    for args in commands:
        fast = ["--steps", "2"] if args[0] == "generate" else []  # the last --steps wins: keep the suite quick
        result = runner.invoke(app, args + fast)
        assert result.exit_code == 0, (args, result.output)
    assert len(list((tmp_path / "outputs").glob("*.png"))) == sum(c[0] == "generate" for c in commands)
    assert len(list((tmp_path / "outputs" / "upscaled").glob("*.png"))) == 1
    start = README.index("## Image modes")
    (example,) = re.findall(r"```python\n(.*?)```", README[start:README.index("\n## ", start + 1)], flags=re.S)
    namespace: dict[str, object] = {}
    exec(compile(example.replace("seed=3,", "seed=3, steps=2,"), "README.md", "exec"), namespace)
    result = namespace["result"]
    assert result.plan.mode == "inpaint" and result.plan.controls[0].model == "demo-canny"  # type: ignore[attr-defined]


def _section(title: str) -> str:
    start = README.index(title)
    return README[start:README.index("\n## ", start + 1)]


def test_lora_prompt_and_few_step_commands_run_as_written(tiny_models, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch):
    """Every `.venv/bin/brushwork` / `.venv/bin/python -c` line of the section's runnable blocks
    (those that do not set up a throw-away folder of their own) runs, in a fresh home."""
    import os
    import shlex
    import subprocess
    import sys

    from typer.testing import CliRunner

    from brushwork.cli.main import app

    section = _section("## LoRAs, prompts and model families")
    lines = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S) if "export " not in block
             for line in block.splitlines() if line.startswith((".venv/bin/brushwork ", ".venv/bin/python -c"))]
    assert sum(line.startswith(".venv/bin/brushwork generate") for line in lines) >= 8
    home = tmp_path / "home"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CACHE_HOME", str(home / ".cache"))  # the default models folder: a fresh one
    for name in ("BRUSHWORK_HOME", "BRUSHWORK_MODELS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BRUSHWORK_STYLES_DIR", str(tmp_path / "styles"))
    runner = CliRunner()
    for line in lines:
        args = shlex.split(line)
        if args[0] == ".venv/bin/python":
            done = subprocess.run([sys.executable, *args[1:]], env=dict(os.environ),
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, (line, done.stderr[-2000:])
            continue
        fast = [] if args[1] != "generate" else (
            (["--steps", "2"] if "--steps" not in args else []) + (["--size", "64x64"] if "--size" not in args else []))
        result = runner.invoke(app, args[1:] + fast)
        assert result.exit_code == 0, (line, result.output)
    outputs = sorted((tmp_path / "outputs").glob("*.png"))
    assert len(outputs) == sum(line.startswith(".venv/bin/brushwork generate") for line in lines)
    assert all(np.asarray(Image.open(path)).std() > 1 for path in outputs)  # no black (NaN) images
    texts = [Image.open(path).text["parameters"] for path in outputs]
    assert sum('Lora hashes: "demo-lora: ' in text for text in texts) == 3
    assert any("(lighthouse:1.3)" in text for text in texts)
    assert any('TI hashes: "tinyemb: ' in text for text in texts), [t[:80] for t in texts]


def test_memory_commands_run_as_written(tiny_models, monkeypatch: pytest.MonkeyPatch):
    import json
    import shlex

    from typer.testing import CliRunner

    from brushwork.cli.main import app

    section = _section("## Memory: `brushwork doctor` and the memory planner")
    lines = [line for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S)
             for line in block.splitlines() if line.startswith(".venv/bin/brushwork ")]
    assert len(lines) >= 2
    monkeypatch.setenv("BRUSHWORK_HOME", str(tiny_models.home))
    runner = CliRunner()
    for line in lines:
        result = runner.invoke(app, shlex.split(line)[1:])
        assert result.exit_code == 0, (line, result.output)
        if "--json" in line:
            assert json.loads(result.output)
