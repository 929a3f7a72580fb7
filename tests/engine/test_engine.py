"""Engine behaviour on tiny models: determinism, seeds, cache, progress, layouts, prompts."""

from __future__ import annotations

import numpy as np
import pytest

from brushwork.engine.progress import CancelToken
from brushwork.errors import Cancelled, ModelUnavailable
from brushwork.facade import Brushwork
from brushwork.post.metadata import a1111_parameters
from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.registry import StyleRegistry
from brushwork.styles.spec import StyleSpec

FAST = {"steps": 4, "width": 128, "height": 128, "style": "general"}


def px(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index]).astype(int)


def test_same_seed_same_pixels_and_other_seed_differs(shared_api):
    first = shared_api.generate("a lighthouse", model="tiny-sd15", seed=7, **FAST)
    again = shared_api.generate("a lighthouse", model="tiny-sd15", seed=7, **FAST)
    other = shared_api.generate("a lighthouse", model="tiny-sd15", seed=8, **FAST)
    assert first.images[0].size == (128, 128)
    assert np.array_equal(px(first), px(again))
    assert np.abs(px(first) - px(other)).mean() > 5


@pytest.mark.parametrize("sampler", ["Euler a", "DPM++ SDE Karras", "DPM++ 2M Karras"])
def test_image_i_of_a_batch_equals_its_seed_run_alone(shared_api, sampler):
    batch = shared_api.generate("a fox", model="tiny-sd15", seed=100, batch_size=3, sampler=sampler, **FAST)
    assert batch.plan.seeds == (100, 101, 102)
    for index, seed in enumerate(batch.plan.seeds):
        alone = shared_api.generate("a fox", model="tiny-sd15", seed=seed, sampler=sampler, **FAST)
        diff = np.abs(px(batch, index) - px(alone))
        # Batched BLAS kernels may round the last bit differently: at most one 8-bit level.
        assert diff.max() <= 1 and (diff == 0).mean() > 0.99
    assert np.abs(px(batch, 0) - px(batch, 1)).mean() > 5


def test_second_generation_loads_nothing(api, tiny_models):
    api.generate("a cat", model="tiny-sd15", seed=1, **FAST)
    api.generate("a dog", model="tiny-sd15", seed=2, **FAST)
    stats = api.engine.cache.stats
    assert (stats.loads, stats.hits) == (1, 1)
    api.generate("a cat", model="tiny-sdxl", seed=1, **FAST)
    assert api.engine.cache.stats.loads == 2


def test_same_weights_under_two_names_load_once(make_settings, tiny_models):
    from brushwork.config import ModelSource

    settings = make_settings(models={"alias-a": ModelSource(source=str(tiny_models.sd15_folder)),
                                     "alias-b": ModelSource(source=str(tiny_models.sd15_folder))})
    api = Brushwork(settings)
    api.generate("a cat", model="alias-a", seed=1, **FAST)
    api.generate("a cat", model="alias-b", seed=1, **FAST)
    assert api.engine.cache.stats.loads == 1


def test_cache_evicts_least_recently_used(make_settings):
    api = Brushwork(make_settings(pipeline_cache_size=1))
    api.generate("a cat", model="tiny-sd15", seed=1, **FAST)
    api.generate("a cat", model="tiny-sdxl", seed=1, **FAST)
    api.generate("a cat", model="tiny-sd15", seed=1, **FAST)
    stats = api.engine.cache.stats
    assert (stats.loads, stats.evictions, len(api.engine.cache)) == (3, 2, 1)


def test_progress_reports_every_step_and_cancel_stops_between_steps(shared_api):
    events = []
    shared_api.generate("a cat", model="tiny-sd15", seed=1, on_progress=events.append, **FAST)
    assert [e.step for e in events] == [1, 2, 3, 4] and events[-1].total == 4
    assert events[-1].fraction == 1.0

    token, seen = CancelToken(), []

    def cancel_after_two(event):
        seen.append(event.step)
        if event.step == 2:
            token.cancel()

    with pytest.raises(Cancelled, match="2 of 4"):
        shared_api.generate("a cat", model="tiny-sd15", seed=1, on_progress=cancel_after_two, cancel=token, **FAST)
    assert seen == [1, 2]
    after = shared_api.generate("a cat", model="tiny-sd15", seed=1, **FAST)  # the pipeline still works
    assert after.images


def test_sdxl_folder_is_deterministic(shared_api):
    a = shared_api.generate("a castle", model="tiny-sdxl", seed=3, **FAST)
    b = shared_api.generate("a castle", model="tiny-sdxl", seed=3, **FAST)
    assert a.plan.model.family == "sdxl"
    assert np.array_equal(px(a), px(b))


@pytest.mark.parametrize(("single", "folder"), [("tiny-single", "tiny-sd15"), ("tiny-sdxl-single", "tiny-sdxl")])
def test_single_file_checkpoint_gives_the_same_pixels_as_the_folder(shared_api, single, folder):
    from_file = shared_api.generate("a boat", model=single, seed=5, **FAST)
    from_folder = shared_api.generate("a boat", model=folder, seed=5, **FAST)
    assert from_file.plan.model.sha256 != from_folder.plan.model.sha256  # really two sources
    assert np.abs(px(from_file) - px(from_folder)).max() <= 1


def test_scanned_checkpoint_family_is_detected_from_its_files(shared_api):
    assert shared_api.plan("x", model="tiny-sdxl").model.family == "sdxl"
    assert shared_api.plan("x", model="tiny-sd15").model.family == "sd15"


def test_long_prompts_are_not_truncated_and_raise_no_length_warning(shared_api, caplog):
    import logging

    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_warning()  # as in a program that did not silence transformers
    transformers_logging.enable_propagation()
    filler = ", ".join(["a very detailed ornate baroque painting"] * 14)  # well past 77 tokens
    try:
        with caplog.at_level(logging.WARNING):
            shared_api.generate(f"{filler}, green", model="tiny-sd15", seed=9, **FAST)
    finally:
        transformers_logging.disable_propagation()
        transformers_logging.set_verbosity(verbosity)
    assert "longer than the specified maximum" not in caplog.text
    tail_a = shared_api.generate(f"{filler}, red", model="tiny-sd15", seed=9, **FAST)
    tail_b = shared_api.generate(f"{filler}, blue", model="tiny-sd15", seed=9, **FAST)
    assert np.abs(px(tail_a) - px(tail_b)).max() > 0  # the last word still matters
    xl_a = shared_api.generate(f"{filler}, red", model="tiny-sdxl", seed=9, **FAST)
    xl_b = shared_api.generate(f"{filler}, blue", model="tiny-sdxl", seed=9, **FAST)
    assert np.abs(px(xl_a) - px(xl_b)).max() > 0


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_chunked_encoding_of_a_short_prompt_equals_diffusers_own(shared_api, model):
    import torch

    from brushwork.engine.prompts import prompt_kwargs

    plan = shared_api.plan("a red fox", model=model, negative_prompt="blurry", **FAST)
    pipe = shared_api.engine.pipeline(plan)
    ours = prompt_kwargs(pipe, plan, force_chunked=True)
    plain = prompt_kwargs(pipe, plan)
    assert plain == {"prompt": plan.prompt, "negative_prompt": "blurry"}  # short prompts go to diffusers as text
    with torch.inference_mode():
        if plan.model.family == "sdxl":
            theirs = pipe.encode_prompt(plan.prompt, num_images_per_prompt=1, do_classifier_free_guidance=True,
                                        negative_prompt="blurry")
            names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                     "negative_pooled_prompt_embeds"]
        else:
            theirs = pipe.encode_prompt(plan.prompt, "cpu", 1, True, negative_prompt="blurry")
            names = ["prompt_embeds", "negative_prompt_embeds"]
    for name, tensor in zip(names, theirs, strict=True):
        assert torch.allclose(ours[name], tensor, atol=1e-6), name


def _hidden(tokenizer, encoder, text: str, layer: int):

    ids = tokenizer(text, padding="max_length", max_length=77, return_tensors="pt").input_ids
    return encoder(ids, output_hidden_states=True).hidden_states[layer]


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_clip_skip_uses_the_earlier_layer_for_both_prompts(shared_api, model):
    import torch

    from brushwork.engine.prompts import prompt_kwargs

    plan = shared_api.plan("a red fox", model=model, negative_prompt="blurry", clip_skip=2, **FAST)
    pipe = shared_api.engine.pipeline(plan)
    ours = prompt_kwargs(pipe, plan)
    with torch.inference_mode():
        for text, name in ((plan.prompt, "prompt_embeds"), ("blurry", "negative_prompt_embeds")):
            if plan.model.family == "sdxl":  # penultimate is the default; clip skip 2 goes one further
                expected = torch.cat([_hidden(pipe.tokenizer, pipe.text_encoder, text, -3),
                                      _hidden(pipe.tokenizer_2, pipe.text_encoder_2, text, -3)], dim=-1)
            else:
                expected = pipe.text_encoder.final_layer_norm(_hidden(pipe.tokenizer, pipe.text_encoder, text, -2))
            assert torch.allclose(ours[name], expected, atol=1e-6), name


def test_clip_skip_and_sampler_change_the_image(shared_api):
    base = shared_api.generate("a tree", model="tiny-sd15", seed=4, **FAST)
    skipped = shared_api.generate("a tree", model="tiny-sd15", seed=4, clip_skip=2, **FAST)
    euler = shared_api.generate("a tree", model="tiny-sd15", seed=4, sampler="Euler", **FAST)
    assert np.abs(px(base) - px(skipped)).max() > 0
    assert np.abs(px(base) - px(euler)).max() > 0


def test_sampler_settings_do_not_leak_between_runs(make_settings):
    warm = Brushwork(make_settings())
    warm.generate("a tree", model="tiny-sd15", seed=4, sampler="DPM++ 2M Karras", **FAST)
    after = warm.generate("a tree", model="tiny-sd15", seed=4, sampler="DPM++ 2M", **FAST)
    fresh = Brushwork(make_settings()).generate("a tree", model="tiny-sd15", seed=4, sampler="DPM++ 2M", **FAST)
    assert np.array_equal(px(after), px(fresh))


def test_plan_for_changed_weights_is_refused(shared_api):
    plan = shared_api.plan("a cat", model="tiny-sd15", seed=1, **FAST)
    forged = plan.model_copy(update={"model": plan.model.model_copy(update={"sha256": "0" * 64})})
    with pytest.raises(ModelUnavailable, match="not the one the plan names"):
        shared_api.run(forged)


def _lora_registry(weight: float | None) -> StyleRegistry:
    def build(prompt: str, **_: object) -> Recipe:
        loras = (LoraRef(name="tinylora", weight=weight),) if weight is not None else ()
        return Recipe(model="tiny-sd15", prompt=prompt, loras=loras)

    return StyleRegistry([StyleSpec(name="general", build=build)])


def test_lora_weight_zero_is_identity_and_one_changes_and_base_is_restored(settings):
    api = Brushwork(settings)
    fast = {k: v for k, v in FAST.items() if k != "style"}
    run = lambda weight: api.run(  # noqa: E731
        Brushwork(settings, styles=_lora_registry(weight)).plan("a lamp", seed=2, **fast))
    base = run(None)
    zero = run(0.0)
    one = run(1.0)
    assert [r.name for r in one.plan.loras] == ["tinylora"] and one.plan.loras[0].weight == 1.0
    assert np.abs(px(base) - px(zero)).max() <= 1
    assert np.abs(px(base) - px(one)).mean() > 1
    assert np.array_equal(px(run(None)), px(base))  # adapter removed after the run
    assert api.engine.cache.stats.loads == 1


def test_missing_lora_is_reported_not_silently_dropped(shared_api):
    def build(prompt: str, **_: object) -> Recipe:
        return Recipe(model="tiny-sd15", prompt=prompt, loras=(LoraRef(name="absent", weight=1),))

    api = Brushwork(shared_api.settings, styles=StyleRegistry([StyleSpec(name="general", build=build)]))
    plan = api.plan("x", seed=1)
    assert plan.loras == () and any("'absent' is not installed" in w for w in plan.warnings)


def test_allowed_pickle_checkpoint_loads_with_weights_only(make_settings, tiny_models, tmp_path):
    import torch
    from safetensors.torch import load_file

    from brushwork.config import ModelSource
    from brushwork.errors import InvalidRequest

    ckpt = tmp_path / "old-model.ckpt"
    torch.save({"state_dict": load_file(str(tiny_models.sd15_single))}, ckpt)
    models = {"old": ModelSource(source=str(ckpt), config=str(tiny_models.sd15_folder))}
    with pytest.raises(InvalidRequest, match="pickle"):
        Brushwork(make_settings(models=models)).plan("x", model="old")
    api = Brushwork(make_settings(models=models, allow_pickle=True))
    plan = api.plan("a boat", model="old", seed=5, **FAST)
    assert plan.model.family == "sd15"  # detected from the pickle's keys, loaded weights_only
    folder = api.generate("a boat", model="tiny-sd15", seed=5, **FAST)
    assert np.abs(px(api.run(plan)) - px(folder)).max() <= 1


def test_style_vae_is_swapped_in_for_the_run_and_put_back(settings):
    def spec(name: str, vae: str | None) -> StyleSpec:
        return StyleSpec(name=name, build=lambda prompt, **_: Recipe(model="tiny-sd15", prompt=prompt, vae=vae))

    api = Brushwork(settings, styles=StyleRegistry([spec("general", None), spec("vae", "tinyvae")]))
    fast = {k: v for k, v in FAST.items() if k != "style"}
    base = api.generate("a lamp", seed=2, **fast)
    swapped = api.generate("a lamp", style="vae", seed=2, **fast)
    assert swapped.plan.vae is not None and swapped.plan.vae.name == "tinyvae"
    assert "VAE: tinyvae" in a1111_parameters(swapped.plan)
    assert np.abs(px(base) - px(swapped)).mean() > 1
    assert np.array_equal(px(api.generate("a lamp", seed=2, **fast)), px(base))  # own VAE back
    assert api.engine.cache.stats.loads == 1


@pytest.mark.parametrize("sampler", ["Heun", "DPM++ SDE Karras", "Euler a"])
def test_progress_counts_solver_steps_not_model_calls(shared_api, sampler):
    events = []
    shared_api.generate("a cat", model="tiny-sd15", seed=1, sampler=sampler, on_progress=events.append, **FAST)
    assert [e.step for e in events] == [1, 2, 3, 4]  # second-order samplers call the UNet 2N-1 times


def test_a_token_cancelled_before_the_run_does_no_step(shared_api):
    token, events = CancelToken(), []
    token.cancel()
    with pytest.raises(Cancelled, match="0 of 4"):
        shared_api.generate("a cat", model="tiny-sd15", seed=1, on_progress=events.append, cancel=token, **FAST)
    assert events == []


@pytest.mark.parametrize(
    ("group", "change", "field"),
    [("size", {"width": 4096}, "width"), ("sampling", {"steps": 151}, "steps"),
     ("sampling", {"sampler": "Euler b"}, "sampler"), (None, {"seeds": tuple(range(17))}, "batch_size")],
)
def test_plans_from_outside_are_checked_before_running(shared_api, group, change, field):
    from brushwork.errors import InvalidRequest

    plan = shared_api.plan("a cat", model="tiny-sd15", seed=1, **FAST)
    if group is not None:
        change = {group: getattr(plan, group).model_copy(update=change)}
    with pytest.raises(InvalidRequest) as info:
        shared_api.run(plan.model_copy(update=change))
    assert info.value.field == field


def test_one_instance_shared_by_threads_builds_one_engine(make_settings):
    from concurrent.futures import ThreadPoolExecutor

    api = Brushwork(make_settings())
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda seed: api.generate("a cat", model="tiny-sd15", seed=seed, **FAST), [1, 2, 1]))
    assert api.engine.cache.stats.loads == 1
    assert np.array_equal(px(results[0]), px(results[2]))


def test_a_lora_named_twice_is_applied_once_with_the_later_weight(settings):
    def build(prompt: str, **_: object) -> Recipe:
        return Recipe(model="tiny-sd15", prompt=prompt,
                      loras=(LoraRef(name="tinylora", weight=1.0), LoraRef(name="tinylora", weight=0.5)))

    api = Brushwork(settings, styles=StyleRegistry([StyleSpec(name="general", build=build)]))
    plan = api.plan("a lamp", seed=2, steps=2, width=64, height=64)
    assert [(r.name, r.weight) for r in plan.loras] == [("tinylora", 0.5)]
    assert len(plan.loras[0].short_hash) == 12  # A1111's LoRA hash length
    assert api.run(plan).images


def test_loading_prints_no_library_progress_bars(make_settings, capfd):
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.enable_progress_bar()  # as in a fresh program (CLI tests in this process turn it off)
    Brushwork(make_settings()).generate("a cat", model="tiny-sd15", seed=1, **FAST)
    assert "Loading pipeline components" not in capfd.readouterr().err
    assert diffusers_logging.is_progress_bar_enabled()  # the caller's setting is put back
