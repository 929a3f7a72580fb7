"""The CLI as a user runs it, in-process: settings from BRUSHWORK_* pointing at the tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner


@pytest.fixture
def cli(tiny_models, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`cli("generate", "a cat", ...)` → typer's Result; arguments may be paths or numbers."""
    from brushwork.cli.main import app

    monkeypatch.setenv("BRUSHWORK_HOME", str(tiny_models.home))
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(tiny_models.models_dir))
    monkeypatch.setenv("BRUSHWORK_STYLES_DIR", str(tmp_path / "styles"))
    monkeypatch.setenv("BRUSHWORK_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("COLUMNS", "250")  # wide tables: one row per line
    runner = CliRunner()
    return lambda *args: runner.invoke(app, [str(a) for a in args])
