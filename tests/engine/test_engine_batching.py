"""Dynamic batching in the engine: Plans that differ only in prompts and seeds run as one call,
and each gets the pixels it would get alone (up to one 8-bit level from batched kernels)."""

from __future__ import annotations

import numpy as np
import pytest

from brushwork.engine.progress import CancelToken
from brushwork.errors import Cancelled
from brushwork.testing.images import picture, square_mask

FAST = {"steps": 4, "width": 64, "height": 64, "style": "general", "model": "tiny-sd15"}


def px(image) -> np.ndarray:
    return np.asarray(image).astype(int)


def assert_same_as_alone(api, plans, results) -> None:
    for plan, result in zip(plans, results, strict=True):
        assert result.plan == plan
        alone = api.engine.run(plan)
        assert len(result.images) == plan.batch_size
        for batched, single in zip(result.images, alone.images, strict=True):
            diff = np.abs(px(batched) - px(single))
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99


@pytest.mark.parametrize("model", ["tiny-sd15", "tiny-sdxl"])
def test_batched_plans_get_their_own_pixels(shared_api, model):
    fields = {**FAST, "model": model}
    plans = [shared_api.plan("a red fox", seed=11, **fields),
             shared_api.plan("a blue whale", seed=12, batch_size=2, **fields),
             shared_api.plan("a green tree", seed=99, **fields)]
    assert len({p.batch_key() for p in plans}) == 1 and plans[0].batch_key()
    results = shared_api.engine.run_batch(plans)
    assert_same_as_alone(shared_api, plans, results)
    assert np.abs(px(results[0].images[0]) - px(results[2].images[0])).mean() > 5  # prompts did reach the UNet


def test_negative_prompts_and_hires_batch_per_image(shared_api):
    fields = {**FAST, "hr_scale": 1.5, "hr_denoise": 0.5, "hr_upscaler": "Latent", "sampler": "DPM++ SDE Karras"}
    plans = [shared_api.plan("a castle", negative_prompt="fog", seed=1, **fields),
             shared_api.plan("a river", negative_prompt="people, cars", seed=2, **fields)]
    assert plans[0].batch_key() == plans[1].batch_key()
    assert_same_as_alone(shared_api, plans, shared_api.engine.run_batch(plans))


def test_img2img_with_the_same_init_image_batches(shared_api):
    init = picture((64, 64))
    plans = [shared_api.plan(text, init_image=init, strength=0.6, seed=seed, **FAST)
             for text, seed in (("a fox", 3), ("a wolf", 4))]
    assert plans[0].batch_key() == plans[1].batch_key()
    assert_same_as_alone(shared_api, plans, shared_api.engine.run_batch(plans))


def test_a_long_prompt_runs_in_its_own_group_and_progress_is_per_plan(shared_api):
    long = ", ".join(f"detail {i}" for i in range(60))  # over 75 tokens: chunked embeddings
    plans = [shared_api.plan("a cat", seed=5, **FAST), shared_api.plan(long, seed=6, **FAST),
             shared_api.plan("a dog", seed=7, **FAST)]
    events: dict[int, list[int]] = {0: [], 1: [], 2: []}
    results = shared_api.engine.run_batch(plans, on_progress=lambda i, e: events[i].append(e.step))
    assert all(steps == [1, 2, 3, 4] for steps in events.values())  # each Plan counts its own steps once
    assert_same_as_alone(shared_api, plans, results)


def test_what_may_not_batch_is_refused(shared_api):
    a = shared_api.plan("a cat", seed=1, **FAST)
    other_steps = shared_api.plan("a cat", seed=1, **{**FAST, "steps": 5})
    other_cfg = shared_api.plan("a cat", seed=1, cfg=3.0, **FAST)
    assert a.batch_key() != other_steps.batch_key() and a.batch_key() != other_cfg.batch_key()
    assert shared_api.plan("a dog", seed=9, **FAST).batch_key() == a.batch_key()
    with pytest.raises(ValueError, match="batch_key"):
        shared_api.engine.run_batch([a, other_steps])
    inpaint = shared_api.plan("a cat", init_image=picture((64, 64)), mask_image=square_mask((64, 64)), **FAST)
    assert inpaint.mode == "inpaint" and inpaint.batch_key() == ""


def test_a_cancelled_batch_stops(shared_api):
    plans = [shared_api.plan("a cat", seed=1, **FAST), shared_api.plan("a dog", seed=2, **FAST)]
    token = CancelToken()

    def cancel_at_two(index, event):
        if event.step == 2:
            token.cancel()

    with pytest.raises(Cancelled, match="2 of 4"):
        shared_api.engine.run_batch(plans, on_progress=cancel_at_two, cancel=token)
