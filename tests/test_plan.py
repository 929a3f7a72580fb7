"""The contract: request validation names the field and the allowed range; Plans round-trip."""

from __future__ import annotations

import pytest

from brushwork.config import Limits
from brushwork.errors import InvalidRequest, NotFound
from brushwork.plan import SEED_MAX, GenerationRequest, ModelRef, Plan
from brushwork.resolve import seeds_for, validate_request


def _req(**fields) -> GenerationRequest:
    return GenerationRequest.parse({"prompt": "a cat", **fields})


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"width": 513}, "width", "multiple of 8"),
        ({"height": 4096}, "height", "between 64 and 2048"),
        ({"width": 32}, "width", "between 64 and 2048"),
        ({"steps": 0}, "steps", "between 1 and 150"),
        ({"steps": 151}, "steps", "between 1 and 150"),
        ({"cfg": 31}, "cfg", "between 0 and 30"),
        ({"cfg": -1}, "cfg", "between 0 and 30"),
        ({"batch_size": 17}, "batch_size", "between 1 and 16"),
        ({"batch_size": 0}, "batch_size", "between 1 and 16"),
        ({"seed": SEED_MAX + 1}, "seed", "between 0 and 4294967295"),
        ({"seed": -1}, "seed", "between 0 and"),
        ({"prompt": "   "}, "prompt", "must not be empty"),
        ({"prompt": "x" * 4001}, "prompt", "limit is 4000"),
        ({"clip_skip": 13}, "clip_skip", "between 1 and 12"),
    ],
)
def test_validation_names_field_and_range(fields, field, fragment):
    with pytest.raises(InvalidRequest) as info:
        validate_request(_req(**fields), Limits())
    assert info.value.field == field
    assert fragment in str(info.value)


def test_limits_are_configurable():
    validate_request(_req(width=4096), Limits(max_size=4096))
    with pytest.raises(InvalidRequest, match="between 64 and 1024"):
        validate_request(_req(width=2048), Limits(max_size=1024))


def test_unknown_sampler_lists_valid_names():
    with pytest.raises(NotFound) as info:
        validate_request(_req(sampler="Euler b"), Limits())
    assert info.value.field == "sampler"
    assert "Euler a" in info.value.valid and "DPM++ 2M Karras" in info.value.valid


def test_parse_turns_type_errors_into_field_errors():
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.parse({"prompt": "a cat", "steps": "many"})
    assert info.value.field == "steps"
    with pytest.raises(InvalidRequest) as info:
        GenerationRequest.parse({"prompt": "a cat", "colour": "red"})
    assert info.value.field == "colour"


def test_seeds_are_consecutive_wrap_and_random_when_absent():
    assert seeds_for(7, 3) == (7, 8, 9)
    assert seeds_for(SEED_MAX, 2) == (SEED_MAX, 0)
    drawn = {seeds_for(None, 1)[0] for _ in range(5)}
    assert len(drawn) > 1 and all(0 <= s <= SEED_MAX for s in drawn)


def _plan(**fields) -> Plan:
    base = dict(
        style="general", model=ModelRef(name="m", family="sd15", sha256="ab" * 32, short_hash="abababab ab"[:10]),
        prompt="a cat", negative_prompt="", sampler="Euler a", schedule="Automatic",
        width=512, height=512, steps=20, cfg=7.0, seeds=(1, 2),
    )
    base.update(fields)
    return Plan(**base)


def test_plan_json_round_trip_and_cache_key():
    plan = _plan()
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.cache_key() == plan.cache_key()
    assert _plan(seeds=(1, 3)).cache_key() != plan.cache_key()
    assert _plan(warnings=("x",)).cache_key() == plan.cache_key()  # warnings don't change pixels


def test_single_keeps_everything_but_other_seeds():
    one = _plan().single(1)
    assert one.seeds == (2,) and one.prompt == "a cat" and one.batch_size == 1


def test_bad_plan_json_is_a_clear_error():
    with pytest.raises(InvalidRequest):
        Plan.from_json('{"style": "x"}')


@pytest.mark.parametrize(
    ("change", "field"),
    [({"width": 500}, "width"), ({"clip_skip": 99}, "clip_skip"), ({"seeds": []}, "seeds"),
     ({"steps": 0}, "steps"), ({"cfg": -100}, "cfg"), ({"seeds": [2**40]}, "seeds.0")],
)
def test_plans_read_from_outside_are_validated(change, field):
    import json

    data = json.loads(_plan().to_json())
    data.update(change)
    with pytest.raises(InvalidRequest) as info:
        Plan.from_json(json.dumps(data))
    assert info.value.field == field
