"""Few-step generation: the LCM sampler, guidance off at cfg <= 1, trailing ("SGM Uniform") timesteps, the fast style."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from brushwork.contract.samplers import a1111_fields, canonical_sampler, from_a1111
from brushwork.styles.registry import StyleRegistry

FEW = {"width": 64, "height": 64, "style": "general"}


def px(result: Any, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index]).astype(int)


@contextmanager
def unet_calls(api: Any, model: str) -> Iterator[list[tuple[int, float]]]:
    """(batch rows, timestep) of every UNet evaluation while inside."""
    unet = api.engine.pipeline(api.plan("x", model=model, **FEW)).unet
    calls: list[tuple[int, float]] = []
    handle = unet.register_forward_pre_hook(lambda module, args: calls.append((args[0].shape[0], float(args[1]))))
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_lcm_runs_exactly_the_asked_steps_without_guidance_at_cfg_1(shared_api, model):
    events = []
    with unet_calls(shared_api, model) as calls:
        result = shared_api.generate("a fox", model=model, sampler="lcm", steps=4, cfg=1.0, seed=3,
                                     on_progress=events.append, **FEW)
    assert result.plan.sampler == "LCM"
    assert [e.step for e in events] == [1, 2, 3, 4] and events[-1].total == 4
    assert [rows for rows, _ in calls] == [1, 1, 1, 1]  # one UNet pass per step: no negative-prompt half
    assert [t for _, t in calls] == [999, 759, 499, 259]  # LCM's own skipping schedule over 50 original steps


def test_lcm_is_deterministic_and_batch_images_equal_their_seed_alone(shared_api):
    lcm = {"model": "tiny-sd15", "sampler": "LCM", "steps": 4, "cfg": 1.0, **FEW}
    first = shared_api.generate("a fox", seed=40, **lcm)
    again = shared_api.generate("a fox", seed=40, **lcm)
    assert np.array_equal(px(first), px(again))
    batch = shared_api.generate("a fox", seed=40, batch_size=2, **lcm)  # LCM adds fresh noise each step
    second = shared_api.generate("a fox", seed=41, **lcm)
    assert np.abs(px(batch, 0) - px(first)).max() <= 1 and np.abs(px(batch, 1) - px(second)).max() <= 1
    assert np.abs(px(first) - px(second)).mean() > 5


def test_cfg_0_and_cfg_1_both_turn_guidance_off(shared_api):
    lcm = {"model": "tiny-sd15", "sampler": "LCM", "steps": 2, "seed": 8, **FEW}
    with unet_calls(shared_api, "tiny-sd15") as calls:
        zero = shared_api.generate("a fox", cfg=0.0, negative_prompt="red", **lcm)
        one = shared_api.generate("a fox", cfg=1.0, negative_prompt="blue", **lcm)
        guided = shared_api.generate("a fox", cfg=2.0, negative_prompt="blue", **lcm)
    assert [rows for rows, _ in calls] == [1, 1, 1, 1, 2, 2]  # cfg 2: prompt and negative prompt each step
    assert np.array_equal(px(zero), px(one))  # without guidance neither cfg nor the negative prompt matters
    assert np.abs(px(one) - px(guided)).max() > 0


@pytest.mark.parametrize("sampler", ["Euler SGM Uniform", "Euler a SGM Uniform"])
def test_sgm_uniform_starts_one_step_runs_from_full_noise(shared_api, sampler):
    # the tiny SDXL model's config has SD's "leading" spacing, as single-file SDXL checkpoints get
    with unet_calls(shared_api, "tiny-sdxl") as calls:
        shared_api.generate("a fox", model="tiny-sdxl", sampler=sampler, steps=1, cfg=0.0, seed=1, **FEW)
        shared_api.generate("a fox", model="tiny-sdxl", sampler=sampler.replace(" SGM Uniform", ""), steps=1,
                            cfg=0.0, seed=1, **FEW)
    assert [t for _, t in calls] == [999, 1]  # trailing vs leading: one leading step would denoise nothing
    with unet_calls(shared_api, "tiny-sdxl") as calls:
        shared_api.generate("a fox", model="tiny-sdxl", sampler=sampler, steps=4, cfg=0.0, seed=1, **FEW)
    assert [t for _, t in calls] == [999, 749, 499, 249]


def test_sgm_uniform_names_round_trip_through_a1111_fields():
    assert a1111_fields(canonical_sampler("euler_a_sgm_uniform")) == ("Euler a", "SGM Uniform")
    assert from_a1111("Euler", "SGM Uniform") == "Euler SGM Uniform"
    assert from_a1111("Euler", "Automatic") == "Euler"


@pytest.fixture(scope="module")
def fast():
    return StyleRegistry.discover(None, include_entry_points=False).get("fast")


@pytest.mark.parametrize(("type_", "model", "sampler", "steps", "cfg", "lora"), [
    (None, "sd15", "LCM", 4, 1.0, "lcm"),
    ("lcm_xl", "sdxl", "LCM", 4, 1.0, "lcm-sdxl"),
    ("turbo", "sdxl-turbo", "Euler a SGM Uniform", 1, 0.0, None),
    ("lightning", "sdxl", "Euler SGM Uniform", 4, 0.0, "sdxl_lightning_4step_lora"),
])
def test_fast_style_carries_each_familys_few_step_settings(fast, type_, model, sampler, steps, cfg, lora):
    recipe = fast.recipe("a fox", type=type_)
    assert (recipe.model, recipe.sampling.sampler, recipe.sampling.steps, recipe.sampling.cfg) == \
        (model, sampler, steps, cfg)
    assert [ref.name for ref in recipe.loras] == ([lora] if lora else [])
    assert canonical_sampler(recipe.sampling.sampler) == sampler  # a real sampler id


def test_fast_style_runs_in_four_lcm_steps_and_warns_about_a_missing_lora(shared_api):
    events = []
    result = shared_api.generate("a fox", style="fast", model="tiny-sd15", seed=2, width=64, height=64,
                                 on_progress=events.append)
    plan = result.plan
    assert (plan.sampler, plan.steps, plan.cfg, plan.loras) == ("LCM", 4, 1.0, ())
    assert any("LoRA 'lcm' is not installed" in warning for warning in plan.warnings)
    assert [e.step for e in events] == [1, 2, 3, 4]
