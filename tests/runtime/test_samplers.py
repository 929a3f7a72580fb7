"""Every A1111 sampler name and alias resolves to the right diffusers scheduler."""

from __future__ import annotations

import pytest

from brushwork.contract.samplers import (
    SAMPLERS,
    a1111_fields,
    canonical_sampler,
    from_a1111,
    snake_case,
)
from brushwork.errors import NotFound
from brushwork.runtime.samplers import scheduler_for
from brushwork.testing.factories import SD_SCHEDULER_CONFIG

EXPECTED = {
    "Euler a": "EulerAncestralDiscreteScheduler",
    "Euler": "EulerDiscreteScheduler",
    "DPM++ 2M": "DPMSolverMultistepScheduler",
    "DPM++ 2M Karras": "DPMSolverMultistepScheduler",
    "DPM++ SDE Karras": "DPMSolverSDEScheduler",
    "DDIM": "DDIMScheduler",
    "LMS": "LMSDiscreteScheduler",
    "Heun": "HeunDiscreteScheduler",
    "UniPC": "UniPCMultistepScheduler",
    "LCM": "LCMScheduler",
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_name_alias_and_case_builds_its_scheduler(name):
    for spelling in (name, name.upper(), name.lower(), snake_case(name)):
        assert canonical_sampler(spelling) == name
    scheduler = scheduler_for(name).build(SD_SCHEDULER_CONFIG, seeds=(5, 6))
    assert type(scheduler).__name__ == EXPECTED[name]
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's own config is kept
    scheduler.set_timesteps(10)


def test_aliases_from_the_issue():
    assert canonical_sampler("euler_a") == "Euler a"
    assert canonical_sampler("dpm++_2m_karras") == "DPM++ 2M Karras"
    assert canonical_sampler("DPM++-2M-Karras") == "DPM++ 2M Karras"


def test_karras_flags_and_solver_settings():
    karras = scheduler_for("DPM++ 2M Karras").build(SD_SCHEDULER_CONFIG)
    plain = scheduler_for("DPM++ 2M").build(dict(karras.config))  # a Karras config must not leak back
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert not plain.config.use_karras_sigmas and plain.config.solver_order == 2
    sde = scheduler_for("DPM++ SDE Karras").build(SD_SCHEDULER_CONFIG, seeds=(5, 6))
    assert sde.config.use_karras_sigmas and sde.noise_sampler_seed == [5, 6]


def test_plan_names_split_into_sampler_and_schedule():
    assert a1111_fields(canonical_sampler("dpm++_2m_karras")) == ("DPM++ 2M", "Karras")
    assert from_a1111("DPM++ 2M", "Karras") == "DPM++ 2M Karras"
    assert from_a1111("Euler a", "Automatic") == "Euler a"
    assert len(set(SAMPLERS.values())) == len(SAMPLERS)  # the split is reversible


def test_unknown_sampler_lists_names():
    with pytest.raises(NotFound) as info:
        canonical_sampler("k_euler_b")
    assert "DPM++ 2M Karras" in str(info.value) and info.value.field == "sampler"
