"""`brushwork generate --model tinyflux`, and `info`/`replay` of the PNG it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from brushwork.post.metadata import PARAMETERS_KEY, read_text_chunks


def test_cli_generate_info_and_replay(cli, tmp_path: Path):
    out = tmp_path / "flux"
    made = cli("generate", "a red fox", "--model", "tinyflux", "--seed", "3", "--size", "64x64", "-o", out)
    assert made.exit_code == 0, made.output
    path = next(out.glob("*.png"))
    text = read_text_chunks(path)[PARAMETERS_KEY]
    assert "Steps: 4, Sampler: Euler" in text and "Model: tinyflux" in text and "Negative prompt" not in text
    info = cli("info", path)
    assert info.exit_code == 0 and "Model: tinyflux" in info.output
    replayed = cli("replay", path, "-o", tmp_path / "again")
    assert replayed.exit_code == 0, replayed.output
    again = next((tmp_path / "again").glob("*.png"))
    assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(again)))
