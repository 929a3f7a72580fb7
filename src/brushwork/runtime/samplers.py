"""Canonical sampler ids → diffusers schedulers.

The names live in the contract (`brushwork.contract.samplers`); this is the
one place that knows which diffusers scheduler class and flags each one
means. Pure data: no torch import until `build`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from brushwork.contract.samplers import SAMPLERS, canonical_sampler


@dataclass(frozen=True)
class SchedulerSpec:
    """How to build one sampler in diffusers."""

    name: str  # canonical id
    scheduler_class: str
    options: dict[str, Any] = field(default_factory=dict)
    per_image_noise_seed: bool = False  # Brownian-tree SDE samplers take one seed per image

    def build(self, base_config: Any, seeds: tuple[int, ...] = ()) -> Any:
        """A fresh scheduler from the model's own scheduler config plus our flags."""
        import diffusers

        cls = getattr(diffusers, self.scheduler_class)
        extra: dict[str, Any] = dict(self.options)
        if self.per_image_noise_seed and seeds:
            extra["noise_sampler_seed"] = list(seeds)
        # A scheduler of another kind than the model's (LCM from an SD config) warns on every run that it
        # ignores the other kind's keys (skip_prk_steps...); that is expected, so it is not shown.
        logger = logging.getLogger("diffusers.configuration_utils")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            return cls.from_config(base_config, **extra)
        finally:
            logger.setLevel(level)


_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}

SCHEDULERS: dict[str, SchedulerSpec] = {
    spec.name: spec
    for spec in (
        SchedulerSpec("Euler a", "EulerAncestralDiscreteScheduler"),
        SchedulerSpec("Euler", "EulerDiscreteScheduler"),
        SchedulerSpec("DPM++ 2M", "DPMSolverMultistepScheduler", {**_DPMPP, "use_karras_sigmas": False}),
        SchedulerSpec("DPM++ 2M Karras", "DPMSolverMultistepScheduler", {**_DPMPP, "use_karras_sigmas": True}),
        SchedulerSpec("DPM++ SDE Karras", "DPMSolverSDEScheduler", {"use_karras_sigmas": True},
                      per_image_noise_seed=True),
        SchedulerSpec("DDIM", "DDIMScheduler"),
        SchedulerSpec("LMS", "LMSDiscreteScheduler"),
        SchedulerSpec("Heun", "HeunDiscreteScheduler"),
        SchedulerSpec("UniPC", "UniPCMultistepScheduler"),
        SchedulerSpec("LCM", "LCMScheduler"),
        # A1111's "SGM Uniform" schedule is diffusers' trailing timestep spacing: with 1-4 steps the default
        # "leading" spacing of SD configs starts far below full noise (1 step would start at t=1).
        SchedulerSpec("Euler SGM Uniform", "EulerDiscreteScheduler", {"timestep_spacing": "trailing"}),
        SchedulerSpec("Euler a SGM Uniform", "EulerAncestralDiscreteScheduler", {"timestep_spacing": "trailing"}),
    )
}
assert set(SCHEDULERS) == set(SAMPLERS), "every contract sampler needs a scheduler"


# Families whose samplers are their own (flow matching): canonical id -> spec; see contract.family_rules.
FAMILY_SCHEDULERS: dict[str, dict[str, SchedulerSpec]] = {
    "flux": {"Euler": SchedulerSpec("Euler", "FlowMatchEulerDiscreteScheduler")},
}


def scheduler_for(name: str, family: str | None = None) -> SchedulerSpec:
    """The diffusers recipe for a sampler (canonical id, A1111 name or alias) on a model `family`."""
    return FAMILY_SCHEDULERS.get(family or "", SCHEDULERS)[canonical_sampler(name)]
