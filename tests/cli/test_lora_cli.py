"""LoRAs from the command line: `--lora`, `<lora:>` tags, `models --kind lora`, errors with exit 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

FAST = ("--model", "tiny-sd15", "--steps", "2", "--size", "64x64", "--seed", "4")


def _png(output: str) -> Path:
    return Path(next(line for line in output.splitlines() if line.endswith(".png")))


def test_lora_option_and_prompt_tag_make_the_same_image_and_metadata(cli):
    by_option = cli("generate", "a lamp", *FAST, "--lora", "tinylora-te:0.5")
    by_tag = cli("generate", "a lamp <lora:tinylora-te:0.5>", *FAST)
    assert by_option.exit_code == 0, by_option.output
    assert by_tag.exit_code == 0, by_tag.output
    first, second = _png(by_option.output), _png(by_tag.output)
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))
    info = cli("info", second)
    first_line = info.output.splitlines()[0]
    assert first_line.startswith("a lamp") and first_line.endswith(" <lora:tinylora-te:0.5>")
    assert 'Lora hashes: "tinylora-te: ' in info.output
    replayed = cli("replay", second)
    assert replayed.exit_code == 0, replayed.output
    assert np.array_equal(np.asarray(Image.open(_png(replayed.output))), np.asarray(Image.open(second)))


def test_models_kind_lora_lists_names_with_their_a1111_hashes(cli, tiny_models):
    from brushwork.models.hashing import sha256_file

    result = cli("models", "--kind", "lora")
    assert result.exit_code == 0, result.output
    lines = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") > 3}
    assert {"tinylora", "tinylora-te-kohya", "tinylora-xl", "demo-lora"} <= set(lines)
    addnet = sha256_file(tiny_models.lora, skip_safetensors_header=True)[:12]
    assert addnet in lines["tinylora"] and "sdxl" in lines["tinylora-xl"]
    assert "embeddings:" in cli("models").output


@pytest.mark.parametrize(("args", "message"), [
    (("a lamp", "--lora", "nosuch"), "error: lora: unknown LoRA 'nosuch'; valid: demo-lora, tinylora"),
    (("a lamp", "--lora", "tinylora:x"), "error: lora: expected a number, got 'x'"),
    (("a lamp", "--lora", "tinylora:8"), "error: lora: #1 weight: must be between -5 and 5, got 8"),
    (("a lamp <lora:tinylora:abc>",), "error: prompt: <lora:tinylora:abc>: the weight 'abc' is not a number"),
    (("a lamp <lora:tinylora-xl>",), "error: lora: 'tinylora-xl' is a LoRA for SDXL; model 'tiny-sd15' is SD 1.5"),
    (("a lamp", "--kind"), None),
])
def test_bad_lora_input_is_exit_2_and_one_line(cli, args, message):
    if message is None:
        result = cli("models", "--kind", "checkpoints")
        assert result.exit_code == 2 and "unknown kind 'checkpoints'; valid: checkpoint" in result.output
        return
    result = cli("generate", *args, *FAST)
    assert result.exit_code == 2, result.output
    assert result.output.strip().startswith(message) and len(result.output.strip().splitlines()) == 1


def test_the_demo_lora_works_on_the_demo_model_out_of_the_box(cli):
    result = cli("generate", "a lamp <lora:demo-lora:0.8>", "--model", "demo", "--steps", "2", "--size", "64x64")
    assert result.exit_code == 0, result.output
    assert 'Lora hashes: "demo-lora: ' in cli("info", _png(result.output)).output


def test_few_step_by_hand_with_an_lcm_lora_runs_four_steps(cli, tiny_models, tmp_path, monkeypatch):
    """`--lora lcm --sampler LCM --steps 4 --cfg 1`, with a (random) LoRA installed under the name lcm."""
    models = tmp_path / "models"
    (models / "loras").mkdir(parents=True)
    (models / "checkpoints").symlink_to(tiny_models.models_dir / "checkpoints")
    (models / "loras" / "lcm.safetensors").symlink_to(tiny_models.lora)
    monkeypatch.setenv("BRUSHWORK_MODELS_DIR", str(models))
    result = cli("generate", "a lamp", "--model", "tiny-sd15", "--size", "64x64", "--lora", "lcm",
                 "--sampler", "LCM", "--steps", "4", "--cfg", "1")
    assert result.exit_code == 0, result.output
    assert "4 steps" in result.output
    parameters = cli("info", _png(result.output)).output
    assert "Steps: 4, Sampler: LCM" in parameters and 'Lora hashes: "lcm: ' in parameters
