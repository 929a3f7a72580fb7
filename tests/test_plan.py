"""The contract: parameter groups declared once, one merge rule, strict Plans from outside, v1 compatibility."""

from __future__ import annotations

import json

import pytest

from brushwork.config import Limits
from brushwork.contract.assets import AssetRef
from brushwork.contract.params import (
    FLAT_FIELDS,
    GROUPS,
    ControlUnit,
    Hires,
    Init,
    Mask,
    Sampling,
    Size,
    fold_flat,
    merge,
    missing_fields,
)
from brushwork.contract.validation import planned_steps, validate_plan
from brushwork.errors import InvalidRequest
from brushwork.plan import SEED_MAX, GenerationRequest, ModelRef, Plan
from brushwork.resolve import seeds_for
from brushwork.styles.recipe import Recipe

REF = AssetRef(sha256="cd" * 32, media_type="image/png", width=512, height=512)


def _plan(**fields) -> Plan:
    base = dict(
        style="general", model=ModelRef(name="m", family="sd15", sha256="ab" * 32, short_hash="ab" * 5),
        prompt="a cat", negative_prompt="",
        sampling=Sampling(sampler="Euler a", steps=20, cfg=7.0, clip_skip=1),
        size=Size(width=512, height=512), seeds=(1, 2),
    )
    base.update(fields)
    return Plan(**base)


# -- groups and the merge rule -------------------------------------------------------------


def test_group_field_names_are_unique_so_flat_names_work_everywhere():
    total = sum(len(cls.model_fields) for cls in GROUPS.values())
    assert len(FLAT_FIELDS) == total
    assert FLAT_FIELDS["steps"] == "sampling" and FLAT_FIELDS["mask_blur"] == "mask" and FLAT_FIELDS["hr_scale"] == "hires"


def test_request_recipe_and_plan_share_the_same_group_classes():
    for name, cls in GROUPS.items():
        assert GenerationRequest.model_fields[name].annotation is cls
        assert Recipe.model_fields[name].annotation is cls
        assert cls in getattr(Plan.model_fields[name].annotation, "__args__", (Plan.model_fields[name].annotation,))


def test_flat_and_nested_spellings_are_the_same_request():
    flat = GenerationRequest.parse({"prompt": "x", "steps": 20, "cfg": 5.0, "mask_blur": 8})
    nested = GenerationRequest.parse({"prompt": "x", "sampling": {"steps": 20, "cfg": 5.0}, "mask": {"mask_blur": 8}})
    assert flat == nested
    assert Recipe(model="m", prompt="p", steps=9, hr_scale=2.0).hires.hr_scale == 2.0


def test_a_field_given_flat_and_nested_is_an_error_not_a_silent_choice():
    with pytest.raises(InvalidRequest, match="steps given twice"):
        GenerationRequest.parse({"prompt": "x", "steps": 20, "sampling": {"steps": 30}})
    with pytest.raises(ValueError):
        fold_flat({"steps": 1, "sampling": 5})


def test_merge_takes_the_first_layer_that_decides_each_field():
    request, style, default = Sampling(steps=0), Sampling(steps=30, cfg=0.0), Sampling(steps=25, cfg=7.0, sampler="Euler")
    merged = merge(Sampling, request, style, default)
    # zeros are decisions too: `--steps 0` and `--cfg 0` no longer fall through to the style
    assert (merged.steps, merged.cfg, merged.sampler) == (0, 0.0, "Euler")
    assert merge(Sampling, None, None, default) == default
    assert missing_fields(merge(Sampling, request)) == ["sampler", "cfg", "clip_skip"]


def test_pydantic_range_errors_name_the_flat_field_and_the_whole_range():
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.parse({"prompt": "x", "cfg": 31.0})
    assert info.value.field == "cfg" and "between 0 and 30" in str(info.value)
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.parse({"prompt": "x", "strength": 1.5})
    assert info.value.field == "strength" and "between 0 and 1" in str(info.value)
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.parse({"prompt": "a cat", "colour": "red"})
    assert info.value.field == "colour"


# -- seeds ----------------------------------------------------------------------------------


def test_seeds_are_consecutive_and_random_ones_never_wrap():
    assert seeds_for(7, 3) == (7, 8, 9)
    drawn = [seeds_for(None, 16) for _ in range(20)]
    assert len({d[0] for d in drawn}) > 1 and all(d[-1] <= SEED_MAX for d in drawn)


# -- Plans ----------------------------------------------------------------------------------


def test_plan_json_round_trip_and_cache_key():
    plan = _plan()
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.cache_key() == plan.cache_key()
    assert _plan(seeds=(1, 3)).cache_key() != plan.cache_key()
    assert _plan(warnings=("x",)).cache_key() == plan.cache_key()  # warnings don't change pixels
    assert json.loads(plan.to_json())["schema_version"] == 2


def test_a_plan_with_every_group_round_trips():
    plan = _plan(mode="inpaint", init=Init(init_image=REF, strength=0.5, resize_mode="crop_and_resize"),
                 mask=Mask(mask_image=REF, mask_blur=4, invert_mask=False, masked_content="fill",
                           inpaint_area="masked", inpaint_padding=32),
                 controls=(ControlUnit(model="canny", image=REF, preprocessor="canny", sha256="ef" * 32),))
    again = Plan.from_json(plan.to_json())
    assert again == plan and again.assets() == [REF, REF, REF]
    validate_plan(again, Limits())


def test_single_keeps_everything_but_other_seeds():
    one = _plan().single(1)
    assert one.seeds == (2,) and one.prompt == "a cat" and one.batch_size == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [({"size": {"width": "512", "height": 512}}, "width"),  # no coercion of text to numbers
     ({"sampling": {"sampler": "Euler a", "steps": True, "cfg": 7.0, "clip_skip": 1}}, "steps"),
     ({"seeds": ["7"]}, "seeds.0"), ({"seeds": []}, "seeds"), ({"seeds": [2**40]}, "seeds.0"),
     ({"style": "../../etc/x"}, "style"), ({"style": "a" * 65}, "style"), ({"style_type": "a/b"}, "style_type"),
     ({"extra": 1}, "extra")],
)
def test_plans_from_outside_are_parsed_strictly(change, field):
    data = json.loads(_plan().to_json())
    data.update(change)
    with pytest.raises(InvalidRequest) as info:
        Plan.from_json(json.dumps(data))
    assert info.value.field == field


@pytest.mark.parametrize("version", [3, 0, "2", True, None])
def test_unknown_schema_versions_are_refused(version):
    data = json.loads(_plan().to_json())
    data["schema_version"] = version
    with pytest.raises(InvalidRequest) as info:
        Plan.from_json(json.dumps(data))
    assert info.value.field == "schema_version" and "reads versions 1, 2" in str(info.value)


def test_not_json_or_not_an_object_is_one_clear_error():
    for text in ("{", "[1, 2]", "\xff"):
        with pytest.raises(InvalidRequest) as info:
            Plan.from_json(text)
        assert info.value.field == "plan"


V1_PLAN = {
    "schema_version": 1, "mode": "txt2img", "style": "general", "style_type": None,
    "model": {"name": "demo", "family": "sd15", "sha256": "ab" * 32, "short_hash": "ab" * 5, "demo": True},
    "prompt": "a cat", "negative_prompt": "blurry", "sampler": "DPM++ 2M", "schedule": "Karras",
    "width": 512, "height": 768, "steps": 25, "cfg": 7.0, "clip_skip": 2, "seeds": [7],
    "loras": [], "vae": None, "warnings": [],
}


def test_a_version_1_plan_is_upgraded_to_the_same_job():
    plan = Plan.from_json(json.dumps(V1_PLAN))
    assert plan.schema_version == 2
    assert (plan.sampler, plan.steps, plan.cfg, plan.clip_skip) == ("DPM++ 2M Karras", 25, 7.0, 2)
    assert (plan.width, plan.height, plan.seeds) == (512, 768, (7,))
    validate_plan(plan, Limits())


# -- one validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [({"size": Size(width=500, height=512)}, "width", "multiple of 8"),
     ({"size": Size(width=512, height=4096)}, "height", "between 64 and 2048"),
     ({"sampling": Sampling(sampler="Euler a", steps=151, cfg=7.0, clip_skip=1)}, "steps", "between 1 and 150"),
     ({"sampling": Sampling(sampler="euler_a", steps=20, cfg=7.0, clip_skip=1)}, "sampler", "canonically"),
     ({"sampling": Sampling(sampler="Euler a", steps=20, cfg=7.0)}, "clip_skip", "must be set"),
     ({"seeds": tuple(range(17))}, "batch_size", "between 1 and 16"),
     ({"prompt": "a\x1b[2Jcat"}, "prompt", "control character"),
     ({"mode": "img2img"}, "init", "is required in img2img mode"),
     ({"init": Init(init_image=REF, strength=0.5, resize_mode="just_resize")}, "init", "does not apply"),
     ({"size": Size(width=768, height=512), "hires": Hires(hr_scale=3.0, hr_upscaler="Latent", hr_steps=0,
                                                           hr_denoise=0.5)}, "hr_scale", "exceeds"),
     ({"hires": Hires(hr_scale=2.0, hr_upscaler="4x", hr_steps=0, hr_denoise=0.5)}, "hr_upscaler", "not pinned"),
     ({"hires": Hires(hr_scale=2.0, hr_upscaler="Latent", hr_steps=1, hr_denoise=0.6)}, "hr_denoise",
      "would run no step (1 steps × denoise 0.6 < 1)"),
     ({"controls": (ControlUnit(model="c", image=REF, start=0.5, end=0.5, sha256="ef" * 32),)}, "control", "before end"),
     ],
)
def test_validate_plan_names_the_field(change, field, fragment):
    with pytest.raises(InvalidRequest) as info:
        validate_plan(_plan(**change), Limits())
    assert info.value.field == field and fragment in str(info.value)


def test_limits_are_configurable():
    wide = _plan(size=Size(width=4096, height=512))
    validate_plan(wide, Limits(max_size=4096))
    with pytest.raises(InvalidRequest, match="between 64 and 1024"):
        validate_plan(_plan(size=Size(width=2048, height=512)), Limits(max_size=1024))


def test_planned_steps_count_every_pass():
    assert planned_steps(_plan()) == 20
    hires = _plan(hires=Hires(hr_scale=2.0, hr_upscaler="Latent", hr_steps=10, hr_denoise=0.5))
    assert planned_steps(hires) == 20 + 5
    img2img = _plan(mode="img2img", init=Init(init_image=REF, strength=0.3, resize_mode="just_resize"))
    assert planned_steps(img2img) == 6
