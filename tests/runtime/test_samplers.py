"""Every A1111 sampler name and alias resolves to the right diffusers scheduler."""

from __future__ import annotations

import pytest

from brushwork.errors import NotFound
from brushwork.runtime.samplers import SAMPLERS, from_plan, get_sampler, snake_case
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
        assert get_sampler(spelling).name == name
    scheduler = get_sampler(name).build(SD_SCHEDULER_CONFIG, seeds=(5, 6))
    assert type(scheduler).__name__ == EXPECTED[name]
    assert scheduler.config.beta_schedule == "scaled_linear"  # the model's own config is kept
    scheduler.set_timesteps(10)


def test_aliases_from_the_issue():
    assert get_sampler("euler_a").name == "Euler a"
    assert get_sampler("dpm++_2m_karras").name == "DPM++ 2M Karras"


def test_karras_flags_and_solver_settings():
    karras = get_sampler("DPM++ 2M Karras").build(SD_SCHEDULER_CONFIG)
    plain = get_sampler("DPM++ 2M").build(dict(karras.config))  # a Karras config must not leak back
    assert karras.config.use_karras_sigmas and karras.config.algorithm_type == "dpmsolver++"
    assert not plain.config.use_karras_sigmas and plain.config.solver_order == 2
    sde = get_sampler("DPM++ SDE Karras").build(SD_SCHEDULER_CONFIG, seeds=(5, 6))
    assert sde.config.use_karras_sigmas and sde.noise_sampler_seed == [5, 6]


def test_plan_names_split_into_sampler_and_schedule():
    spec = get_sampler("dpm++_2m_karras")
    assert (spec.sampler, spec.schedule) == ("DPM++ 2M", "Karras")
    assert from_plan("DPM++ 2M", "Karras") is spec
    assert from_plan("Euler a", "Automatic").name == "Euler a"
    assert len({(s.sampler, s.schedule) for s in SAMPLERS}) == len(SAMPLERS)


def test_unknown_sampler_lists_names():
    with pytest.raises(NotFound) as info:
        get_sampler("k_euler_b")
    assert "DPM++ 2M Karras" in str(info.value) and info.value.field == "sampler"
