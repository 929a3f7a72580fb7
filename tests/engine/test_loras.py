"""Warm LoRAs: read once, switched per run, base weights bit-identical afterwards; both file layouts;
`<lora:>` tags equal to `loras=`; family and weight errors."""

from __future__ import annotations

import numpy as np
import pytest

from brushwork.errors import InvalidRequest, ModelUnavailable, NotFound
from brushwork.facade import Brushwork

FAST = {"steps": 3, "width": 64, "height": 64, "seed": 5}


def px(result) -> np.ndarray:
    return np.asarray(result.images[0], dtype=np.int16)


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """Names of the LoRA files read from disk, in order."""
    import brushwork.engine.lora_cache as lora_cache

    seen: list[str] = []
    real = lora_cache.read_lora_file

    def counting(name, path):
        seen.append(name)
        return real(name, path)

    monkeypatch.setattr(lora_cache, "read_lora_file", counting)
    return seen


def _run(api: Brushwork, prompt: str = "a lamp", model: str = "tiny-sd15", **fields) -> np.ndarray:
    return px(api.generate(prompt, model=model, **{**FAST, **fields}))


def test_a_b_a_gives_a_again_with_each_file_read_once_and_the_base_untouched(api, reads):
    base = _run(api)
    a = _run(api, loras=[{"name": "tinylora", "weight": 1.0}])
    b = _run(api, loras=[{"name": "tinylora-b"}])
    assert np.abs(a - base).mean() > 1 and np.abs(b - a).mean() > 1
    assert np.array_equal(_run(api), base)  # none: the base model's own pixels, bit for bit
    assert np.array_equal(_run(api, loras=[{"name": "tinylora"}]), a)
    assert np.array_equal(_run(api, loras=[{"name": "tinylora-b"}]), b)
    assert np.array_equal(_run(api), base)
    assert reads == ["tinylora", "tinylora-b"]
    loaded = api.engine.loaded(api.plan("x", model="tiny-sd15")).loras
    assert len(loaded.loaded) == 2 and not loaded.active


def test_weight_zero_equals_no_lora_exactly_and_weights_scale(shared_api):
    api = shared_api
    base = _run(api)
    assert np.array_equal(_run(api, loras=[{"name": "tinylora-te", "weight": 0}]), base)
    half = _run(api, loras=[{"name": "tinylora-te", "weight": 0.5}])
    full = _run(api, loras=[{"name": "tinylora-te", "weight": 1.0}])
    negative = _run(api, loras=[{"name": "tinylora-te", "weight": -1.0}])
    assert np.abs(half - base).mean() > 0.5 and np.abs(half - full).mean() > 0.5
    assert np.abs(negative - full).mean() > 1 and np.abs(negative - base).mean() > 1


def test_two_loras_at_once_differ_from_each_alone(shared_api):
    api = shared_api
    a = _run(api, loras=[{"name": "tinylora"}])
    both = _run(api, loras=[{"name": "tinylora"}, {"name": "tinylora-b", "weight": 0.7}])
    assert np.abs(both - a).mean() > 0.5
    plan = api.plan("x", model="tiny-sd15", loras=[{"name": "tinylora"}, {"name": "tinylora-b", "weight": 0.7}])
    assert [(r.name, r.weight) for r in plan.loras] == [("tinylora", 1.0), ("tinylora-b", 0.7)]


@pytest.mark.parametrize(("model", "diffusers_name", "kohya_name"), [
    ("tiny-sd15", "tinylora-te", "tinylora-te-kohya"),
    ("tiny-sdxl", "tinylora-xl", "tinylora-xl-kohya"),
])
def test_kohya_and_diffusers_files_of_one_lora_give_the_same_pixels(shared_api, model, diffusers_name,
                                                                     kohya_name):
    base = _run(shared_api, model=model)
    from_diffusers = _run(shared_api, model=model, loras=[{"name": diffusers_name}])
    from_kohya = _run(shared_api, model=model, loras=[{"name": kohya_name}])
    assert np.abs(from_diffusers - base).mean() > 1
    assert np.array_equal(from_kohya, from_diffusers)


def test_the_text_encoder_part_of_a_lora_is_applied(shared_api):
    """A UNet-less copy of a LoRA still changes the picture: its text-encoder weights are used."""
    pipe = shared_api.engine.pipeline(shared_api.plan("x", model="tiny-sd15"))
    base = pipe.encode_prompt("a lamp", "cpu", 1, False)[0]
    plan = shared_api.plan("a lamp", model="tiny-sd15", loras=[{"name": "tinylora-te"}])
    loaded = shared_api.engine.loaded(plan)
    from brushwork.engine.adapters import adapter_path

    loaded.loras.activate(plan.loras, lambda ref: adapter_path(shared_api.catalog, "lora", ref))
    try:
        changed = pipe.encode_prompt("a lamp", "cpu", 1, False)[0]
    finally:
        loaded.loras.deactivate()
    assert (changed - base).abs().max() > 1e-3
    assert (pipe.encode_prompt("a lamp", "cpu", 1, False)[0] - base).abs().max() == 0


def test_a_prompt_tag_equals_the_lora_option_and_never_reaches_the_tokenizer(shared_api, monkeypatch):
    tagged_plan = shared_api.plan("a lamp <lora:tinylora-te:0.5>, warm light", model="tiny-sd15", **FAST)
    option_plan = shared_api.plan("a lamp, warm light", model="tiny-sd15", loras=[{"name": "tinylora-te",
                                                                                   "weight": 0.5}], **FAST)
    assert tagged_plan.prompt == option_plan.prompt
    assert tagged_plan.loras == option_plan.loras
    pipe = shared_api.engine.pipeline(tagged_plan)
    seen: list[str] = []
    real = type(pipe.tokenizer).__call__

    def spy(self, text, *args, **kwargs):
        seen.extend([text] if isinstance(text, str) else list(text))
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(type(pipe.tokenizer), "__call__", spy)
    tagged = px(shared_api.run(tagged_plan))
    assert seen and not any("<" in text or "lora" in text for text in seen)
    assert np.array_equal(tagged, px(shared_api.run(option_plan)))


def test_lyco_tags_load_like_lora_tags(shared_api):
    plan = shared_api.plan("a lamp <lyco:tinylora>", model="tiny-sd15", **FAST)
    assert [(r.name, r.weight) for r in plan.loras] == [("tinylora", 1.0)]


def test_the_lru_budget_evicts_the_least_recently_used(make_settings, reads):
    api = Brushwork(make_settings(lora_cache_mb=0))
    first = _run(api, loras=[{"name": "tinylora"}])
    assert np.array_equal(_run(api, loras=[{"name": "tinylora"}]), first)
    assert reads == ["tinylora", "tinylora"]  # budget 0: nothing stays loaded between runs
    assert api.engine.loaded(api.plan("x", model="tiny-sd15")).loras.loaded == []


def test_a_batch_of_jobs_with_the_same_lora_runs_together(shared_api):
    plans = [shared_api.plan(p, model="tiny-sd15", loras=[{"name": "tinylora"}], **FAST) for p in ("a", "b")]
    assert plans[0].batch_key() == plans[1].batch_key()
    alone = px(shared_api.run(plans[1]))
    batched = shared_api.engine.run_batch(plans)
    assert np.abs(px(batched[1]) - alone).max() <= 1
    other = shared_api.plan("a", model="tiny-sd15", loras=[{"name": "tinylora-b"}], **FAST)
    assert other.batch_key() != plans[0].batch_key()


def test_lora_metadata_records_a1111_lora_hashes(shared_api, tmp_path):
    from brushwork.post.metadata import a1111_parameters

    plan = shared_api.plan("a lamp <lora:tinylora:0.8>", model="tiny-sd15", **FAST)
    text = a1111_parameters(plan, 0)
    assert "<lora:tinylora:0.8>" in text.splitlines()[0]
    assert f'Lora hashes: "tinylora: {plan.loras[0].short_hash}"' in text


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"prompt": "a <lora:nosuch:0.5>"}, "lora", "unknown LoRA 'nosuch'; valid: demo-lora, tinylora"),
    ({"loras": [{"name": "nosuch"}]}, "lora", "unknown LoRA 'nosuch'"),
    ({"prompt": "a <lora:tinylora:abc>"}, "prompt", "the weight 'abc' is not a number"),
    ({"prompt": "a <lora:tinylora:9>"}, "prompt", "the weight must be between -5 and 5, got 9"),
    ({"prompt": "a <lora:tinylora:1:0.5>"}, "prompt", "separate text-encoder/UNet weights are not supported"),
    ({"prompt": "a <lora:tinylora"}, "prompt", "is never closed"),
    ({"prompt": "a <hypernet:x:1>"}, "prompt", "is not supported"),
    ({"negative_prompt": "<lora:tinylora>"}, "negative_prompt", "LoRA tags go in the prompt"),
    ({"loras": [{"name": "tinylora", "weight": 6}]}, "lora", "#1 weight: must be between -5 and 5, got 6"),
    ({"prompt": "a <lora:tinylora-xl>"}, "lora", "'tinylora-xl' is a LoRA for SDXL; model 'tiny-sd15' is SD 1.5"),
])
def test_bad_lora_input_is_one_line_naming_the_field(shared_api, fields, field, message):
    request = {"prompt": "a lamp", "model": "tiny-sd15", **fields}
    with pytest.raises(InvalidRequest) as info:
        shared_api.plan(request.pop("prompt"), **request)
    assert info.value.field == field and message in info.value.message and "\n" not in str(info.value)


def test_too_many_loras_is_refused(make_settings):
    api = Brushwork(make_settings(limits={"max_loras": 1}))
    with pytest.raises(InvalidRequest, match="lora: 2 LoRAs; the limit is 1"):
        api.plan("a <lora:tinylora> <lora:tinylora-b>", model="tiny-sd15")


def test_an_unknown_lora_lists_what_is_installed(shared_api):
    with pytest.raises(NotFound) as info:
        shared_api.plan("a <lora:nosuch>", model="tiny-sd15")
    assert {"tinylora", "tinylora-b", "tinylora-te", "demo-lora"} <= set(info.value.valid)


def test_a_loha_file_is_refused_as_unsupported_lycoris(shared_api, tmp_path, make_settings):
    import torch
    from safetensors.torch import save_file

    folder = tmp_path / "models"
    (folder / "loras").mkdir(parents=True)
    (folder / "checkpoints").symlink_to(shared_api.catalog.models_dir / "checkpoints")
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_a": torch.zeros(4, 4),
               "lora_unet_down_blocks_0_attentions_0_proj_in.hada_w1_b": torch.zeros(4, 4)},
              str(folder / "loras" / "loha.safetensors"))
    api = Brushwork(make_settings(models_dir=folder))
    plan = api.plan("a <lyco:loha>", model="tiny-sd15", **FAST)
    with pytest.raises(ModelUnavailable, match=r"LoRA 'loha' \(loha.safetensors\): is a LyCORIS LoHa file"):
        api.run(plan)
    base = _run(api)
    assert np.array_equal(_run(api), base)  # the failed load left nothing switched on


def test_the_demo_lora_builds_in_a_fresh_home_the_same_every_time(tmp_path):
    from brushwork.models.demo import ensure_demo_lora
    from brushwork.models.hashing import sha256_file

    first = ensure_demo_lora(tmp_path / "one")  # builds the demo model first, then the LoRA
    second = ensure_demo_lora(tmp_path / "two")
    assert sha256_file(first) == sha256_file(second)  # same file on every machine: Plans replay anywhere


def test_flux_refuses_lora_tags_and_warns_that_emphasis_is_plain_text(shared_api):
    with pytest.raises(InvalidRequest, match="lora: LoRAs are not supported for FLUX.1 models yet"):
        shared_api.plan("a lamp <lora:tinylora>", model="tinyflux", width=64, height=64)
    plan = shared_api.plan("a (lamp:1.3)", model="tinyflux", width=64, height=64)
    assert any("emphasis like (word:1.2) is not applied" in warning for warning in plan.warnings)


def test_replaying_a_plan_whose_lora_is_missing_or_changed_fails_before_loading(shared_api):
    plan = shared_api.plan("a lamp <lora:tinylora:0.5>", model="tiny-sd15", **FAST)
    missing = plan.model_copy(update={"loras": (plan.loras[0].model_copy(update={"name": "gone"}),)})
    with pytest.raises(InvalidRequest, match=r"lora: 'gone' is not installed here; the Plan needs that lora"):
        shared_api.check(missing)
    changed = plan.model_copy(update={"loras": (plan.loras[0].model_copy(update={"sha256": "0" * 64}),)})
    with pytest.raises(ModelUnavailable, match="changed since the plan was made"):
        shared_api.check(changed)
    shared_api.check(plan)  # the real one passes


def test_every_result_says_how_it_ran(shared_api):
    import torch

    result = shared_api.generate("a lamp", model="tiny-sd15", **FAST)
    assert result.runtime == {"device": "cpu", "dtype": "float32", "threads": torch.get_num_threads()}
