"""PNG metadata: A1111 text that A1111's own parser reads back, and the embedded Plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brushwork.errors import InvalidRequest
from brushwork.plan import AdapterRef
from brushwork.post.metadata import (
    PARAMETERS_KEY,
    a1111_parameters,
    parse_a1111_parameters,
    read_plan,
    read_text_chunks,
)

FAST = {"steps": 3, "width": 64, "height": 64, "style": "general"}


def test_parameters_text_follows_a1111(shared_api):
    plan = shared_api.plan("a cat, sitting", model="tiny-sd15", seed=42, batch_size=2,
                           negative_prompt="blurry", sampler="dpm++_2m_karras", cfg=6.5, **FAST)
    text = a1111_parameters(plan, index=1)
    lines = text.split("\n")
    assert lines[0] == plan.prompt and "a cat, sitting" in plan.prompt
    assert lines[1] == "Negative prompt: blurry"
    assert lines[2].startswith(
        f"Steps: 3, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 43, Size: 64x64, "
        f"Model hash: {plan.model.short_hash}, Model: tiny-sd15"
    )


def test_parameters_round_trip_through_the_parser(shared_api):
    plan = shared_api.plan("a cat", model="tiny-sd15", seed=1, clip_skip=2, **FAST)
    plan = plan.model_copy(update={"loras": (AdapterRef(name="rx7", sha256="c" * 64, short_hash="c" * 10,
                                                         weight=0.8),)})
    parsed = parse_a1111_parameters(a1111_parameters(plan))
    assert parsed["Prompt"] == f"{plan.prompt} <lora:rx7:0.8>"
    assert parsed["Negative prompt"] == plan.negative_prompt
    assert parsed["Seed"] == "1" and parsed["Clip skip"] == "2" and parsed["Sampler"] == "DPM++ 2M"
    assert parsed["Lora hashes"] == "rx7: cccccccccc"  # quoted value with a comma-free colon survives


def test_demo_images_say_they_are_noise(shared_api):
    plan = shared_api.plan("a cat", model="demo", seed=1, **FAST)
    assert plan.model.demo
    assert "images are noise" in parse_a1111_parameters(a1111_parameters(plan))["Note"]


def test_saved_png_carries_both_chunks_and_replays_identically(shared_api, tmp_path: Path):
    result = shared_api.generate("a cat", model="tiny-sd15", seed=11, batch_size=2, **FAST)
    paths = shared_api.save(result, tmp_path)
    assert [p.name for p in paths] == ["00000-11-general.png", "00001-12-general.png"]
    second = read_plan(paths[1])
    assert second.seeds == (12,) and second == result.plan.single(1)
    assert "Seed: 12" in read_text_chunks(paths[1])[PARAMETERS_KEY]
    replayed = shared_api.replay(paths[1])
    assert np.array_equal(np.asarray(replayed.images[0]), np.asarray(Image.open(paths[1])))


def test_numbering_continues_and_never_overwrites(shared_api, tmp_path: Path):
    result = shared_api.generate("a cat", model="tiny-sd15", seed=3, **FAST)
    first = shared_api.save(result, tmp_path)
    (tmp_path / "00001-3-general.png").write_bytes(b"someone else's")
    second = shared_api.save(result, tmp_path)
    assert first[0].name == "00000-3-general.png"
    assert second[0].name == "00002-3-general.png"


def test_reading_bad_files_is_a_clear_error(tmp_path: Path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(InvalidRequest, match="carries no brushwork plan"):
        read_plan(plain)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(InvalidRequest, match="is not an image"):
        read_plan(tmp_path / "text.png")
    with pytest.raises(InvalidRequest, match="does not exist"):
        read_plan(tmp_path / "missing.png")


def test_concurrent_writers_never_overwrite(shared_api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from brushwork.storage import local

    result = shared_api.generate("a cat", model="tiny-sd15", seed=3, **FAST)
    (tmp_path / "00000-3-general.png").write_bytes(b"written by another process a moment ago")
    monkeypatch.setattr(local, "_next_number", lambda folder: 0)  # both writers saw an empty folder
    paths = shared_api.save(result, tmp_path)
    assert paths[0].name == "00001-3-general.png"
    assert (tmp_path / "00000-3-general.png").read_bytes().startswith(b"written by another")


def test_a1111_quoting_of_values_with_separators(shared_api):
    plan = shared_api.plan("a cat", model="tiny-sd15", seed=1, **FAST)
    plan = plan.model_copy(update={"style": "my, style: v2"})
    text = a1111_parameters(plan)
    assert 'Style: "my, style: v2"' in text
    assert parse_a1111_parameters(text)["Style"] == "my, style: v2"
