"""FLUX.1 (schnell family) end to end on the tiny model: defaults, refusals, single file = folder, CLI."""

from __future__ import annotations

import numpy as np
import pytest

from brushwork.errors import InvalidRequest

FAST = {"width": 64, "height": 64, "seed": 5}


def px(result) -> np.ndarray:
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16)


def test_family_defaults_replace_an_sd_style_and_say_so(shared_api):
    plan = shared_api.plan("a red fox", model="tinyflux", style="general", **FAST)
    assert plan.model.family == "flux" and plan.model.variant == "base"
    assert (plan.sampler, plan.steps, plan.cfg, plan.clip_skip) == ("Euler", 4, 0.0, 1)
    assert plan.negative_prompt == ""
    assert any("DPM++ 2M Karras" in w and "FLUX.1 uses sampler Euler, steps 4" in w for w in plan.warnings)
    assert any("negative prompt is not used" in w for w in plan.warnings)


def test_the_requested_values_win_over_the_family_defaults(shared_api):
    plan = shared_api.plan("a red fox", model="tinyflux", steps=2, sampler="euler", **FAST)
    assert (plan.sampler, plan.steps) == ("Euler", 2)
    assert not any("steps" in w for w in plan.warnings if "style's" in w and "steps 25" in w)


def test_flux_runs_the_flow_matching_scheduler(shared_api):
    result = shared_api.generate("a red fox", model="tinyflux", steps=2, **FAST)
    assert type(shared_api.engine.pipeline(result.plan).scheduler).__name__ == "FlowMatchEulerDiscreteScheduler"


def test_a_negative_prompt_is_a_warning_and_changes_nothing(shared_api):
    with_negative = shared_api.generate("a red fox", model="tinyflux", negative_prompt="blurry", steps=2, **FAST)
    without = shared_api.generate("a red fox", model="tinyflux", steps=2, **FAST)
    assert with_negative.plan.negative_prompt == ""
    assert "FLUX.1 models take no negative prompt: your negative prompt is not used" in with_negative.plan.warnings
    assert np.array_equal(px(with_negative), px(without))


def test_schnell_ignores_cfg_and_the_plan_says_so(shared_api):
    guided = shared_api.generate("a red fox", model="tinyflux", cfg=3.5, steps=2, **FAST)
    plain = shared_api.generate("a red fox", model="tinyflux", cfg=0, steps=2, **FAST)
    assert any("FLUX.1-schnell ignores it" in w for w in guided.plan.warnings)
    assert np.array_equal(px(guided), px(plain))


@pytest.mark.parametrize("sampler", ["DPM++ 2M Karras", "Euler a", "LCM"])
def test_samplers_without_meaning_for_flow_matching_are_refused_with_the_valid_list(shared_api, sampler):
    with pytest.raises(InvalidRequest) as info:
        shared_api.plan("a red fox", model="tinyflux", sampler=sampler, **FAST)
    assert info.value.field == "sampler" and str(info.value).endswith("valid: Euler")


@pytest.mark.parametrize(("fields", "field", "fragment"), [
    ({"clip_skip": 2}, "clip_skip", "does not apply to FLUX.1 models"),
    ({"width": 72}, "width", "multiple of 16"),
    ({"hr_scale": 2.0}, "hr_scale", "hires fix is not supported"),
    ({"loras": [{"name": "tinylora", "weight": 1.0}]}, "lora", "not supported for FLUX.1 models yet"),
])
def test_what_flux_cannot_do_is_refused_by_name(shared_api, fields, field, fragment):
    with pytest.raises(InvalidRequest) as info:
        shared_api.plan("a red fox", model="tinyflux", **{**FAST, **fields})
    assert info.value.field == field and fragment in str(info.value)


def test_inpainting_is_refused_for_flux(shared_api):
    from brushwork.testing.images import picture, square_mask

    with pytest.raises(InvalidRequest) as info:
        shared_api.plan("a red fox", model="tinyflux", init_image=shared_api.add_image(picture()),
                        mask_image=shared_api.add_image(square_mask()), **FAST)
    assert info.value.field == "mode" and "supported: txt2img, img2img" in str(info.value)


def test_a_prompt_longer_than_t5_reads_is_refused_with_its_token_count(shared_api):
    plan = shared_api.plan("fox " * 300, model="tinyflux", steps=1, **FAST)
    with pytest.raises(InvalidRequest) as info:
        shared_api.run(plan)
    from brushwork.engine.flux_prompts import t5_token_count

    count = t5_token_count(shared_api.engine.pipeline(plan).tokenizer_2, plan.prompt)  # the style adds words
    assert count > 301  # 300 words and </s>
    assert info.value.field == "prompt" and f"is {count} T5 tokens" in str(info.value) and "at most 256" in str(info.value)


def test_single_file_gives_the_same_pixels_as_the_folder(shared_api):
    from_file = shared_api.generate("a red fox", model="tinyflux-single", steps=2, **FAST)
    from_folder = shared_api.generate("a red fox", model="tinyflux", steps=2, **FAST)
    assert from_file.plan.model.sha256 != from_folder.plan.model.sha256  # really two sources
    assert from_file.plan.model.family == "flux"
    # ≤ 1: the folder's weights are memory-mapped at unaligned offsets, which changes float rounding slightly
    assert np.abs(px(from_file) - px(from_folder)).max() <= 1



def test_live_previews_unpack_flux_latents(shared_api):
    import io

    from PIL import Image

    plan = shared_api.plan("a red fox", model="tinyflux", steps=2, **FAST)
    events = []
    shared_api.engine.run_batch([plan], lambda _member, event: events.append(event), preview_every=1)
    previews = [event.preview for event in events if event.preview is not None]
    assert previews  # (the last step has no preview: its image is the result)
    assert Image.open(io.BytesIO(previews[0])).size == (plan.width // 8, plan.height // 8)


def test_unpacking_flux_latents_inverts_diffusers_packing():
    import torch
    from diffusers import FluxPipeline

    from brushwork.engine.preview import unpack_flux

    latents = torch.randn(2, 16, 12, 8)  # a 96x64 image's latents
    packed = FluxPipeline._pack_latents(latents, 2, 16, 12, 8)
    assert torch.equal(unpack_flux(packed, (64, 96)), latents)
