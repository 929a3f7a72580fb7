"""A1111 sampler names → diffusers schedulers.

Users know samplers by AUTOMATIC1111's names ("DPM++ 2M Karras"); diffusers
knows scheduler classes plus config flags. This table is the one place that
maps between them. Lookup is case-insensitive and accepts snake_case aliases
("dpm++_2m_karras", "euler_a"). Pure data: no torch import until `build`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brushwork.errors import NotFound


@dataclass(frozen=True)
class SamplerSpec:
    """One A1111 sampler: its display name split into sampler + schedule type."""

    name: str
    sampler: str
    schedule: str
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
        return cls.from_config(base_config, **extra)


_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2}

SAMPLERS: tuple[SamplerSpec, ...] = (
    SamplerSpec("Euler a", "Euler a", "Automatic", "EulerAncestralDiscreteScheduler"),
    SamplerSpec("Euler", "Euler", "Automatic", "EulerDiscreteScheduler"),
    SamplerSpec(
        "DPM++ 2M", "DPM++ 2M", "Automatic", "DPMSolverMultistepScheduler",
        {**_DPMPP, "use_karras_sigmas": False},
    ),
    SamplerSpec(
        "DPM++ 2M Karras", "DPM++ 2M", "Karras", "DPMSolverMultistepScheduler",
        {**_DPMPP, "use_karras_sigmas": True},
    ),
    SamplerSpec(
        "DPM++ SDE Karras", "DPM++ SDE", "Karras", "DPMSolverSDEScheduler",
        {"use_karras_sigmas": True}, per_image_noise_seed=True,
    ),
    SamplerSpec("DDIM", "DDIM", "Automatic", "DDIMScheduler"),
    SamplerSpec("LMS", "LMS", "Automatic", "LMSDiscreteScheduler"),
    SamplerSpec("Heun", "Heun", "Automatic", "HeunDiscreteScheduler"),
    SamplerSpec("UniPC", "UniPC", "Automatic", "UniPCMultistepScheduler"),
    SamplerSpec("LCM", "LCM", "Automatic", "LCMScheduler"),
)


def snake_case(name: str) -> str:
    """'DPM++ 2M Karras' → 'dpm++_2m_karras'; 'Euler a' → 'euler_a'."""
    return "_".join(name.lower().split())


def _index() -> dict[str, SamplerSpec]:
    table: dict[str, SamplerSpec] = {}
    for spec in SAMPLERS:
        table[spec.name.lower()] = spec
        table[snake_case(spec.name)] = spec
    return table


def sampler_names() -> list[str]:
    return [s.name for s in SAMPLERS]


def get_sampler(name: str) -> SamplerSpec:
    """Find a sampler by A1111 name or snake_case alias, case-insensitively."""
    key = " ".join(name.strip().lower().replace("-", " ").split())
    table = _index()
    spec = table.get(key) or table.get(snake_case(key)) or table.get(key.replace("_", " "))
    if spec is None:
        raise NotFound("sampler", name, sampler_names())
    return spec


def from_plan(sampler: str, schedule: str) -> SamplerSpec:
    """The sampler a Plan names by (sampler, schedule), e.g. ('DPM++ 2M', 'Karras')."""
    for spec in SAMPLERS:
        if spec.sampler == sampler and spec.schedule == schedule:
            return spec
    raise NotFound("sampler", f"{sampler} ({schedule})", sampler_names())
