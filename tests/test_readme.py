"""The README's promises: its set-up commands are what CI runs, its Python example runs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

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
