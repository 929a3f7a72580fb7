"""Sampler names: one canonical id per sampler, A1111's full name ("DPM++ 2M Karras").

A Plan stores the canonical id only. It is split into A1111's "Sampler" and
"Schedule type" fields when metadata is written, and mapped to a diffusers
scheduler by `brushwork.runtime.samplers`. Lookup is case-insensitive and
accepts snake_case aliases ("dpm++_2m_karras", "euler_a").
"""

from __future__ import annotations

from brushwork.errors import NotFound

# canonical id -> (A1111 "Sampler", A1111 "Schedule type")
SAMPLERS: dict[str, tuple[str, str]] = {
    "Euler a": ("Euler a", "Automatic"),
    "Euler": ("Euler", "Automatic"),
    "DPM++ 2M": ("DPM++ 2M", "Automatic"),
    "DPM++ 2M Karras": ("DPM++ 2M", "Karras"),
    "DPM++ SDE Karras": ("DPM++ SDE", "Karras"),
    "DDIM": ("DDIM", "Automatic"),
    "LMS": ("LMS", "Automatic"),
    "Heun": ("Heun", "Automatic"),
    "UniPC": ("UniPC", "Automatic"),
    "LCM": ("LCM", "Automatic"),
    # "SGM Uniform": timesteps spaced from the very last one ("trailing"), which few-step
    # distilled models (SDXL-Turbo, SDXL-Lightning) were trained for.
    "Euler SGM Uniform": ("Euler", "SGM Uniform"),
    "Euler a SGM Uniform": ("Euler a", "SGM Uniform"),
}


def snake_case(name: str) -> str:
    """'DPM++ 2M Karras' → 'dpm++_2m_karras'; 'Euler a' → 'euler_a'."""
    return "_".join(name.lower().split())


def sampler_names() -> list[str]:
    return list(SAMPLERS)


def canonical_sampler(name: str) -> str:
    """The canonical id for an A1111 name or snake_case alias, case-insensitively."""
    wanted = snake_case(name.strip().replace("-", " ").replace("_", " "))
    for canonical in SAMPLERS:
        if snake_case(canonical.replace("-", " ")) == wanted:
            return canonical
    raise NotFound("sampler", name, sampler_names())


def a1111_fields(canonical: str) -> tuple[str, str]:
    """A1111's ("Sampler", "Schedule type") pair for a canonical id."""
    return SAMPLERS[canonical]


def from_a1111(sampler: str, schedule: str) -> str:
    """The canonical id for A1111's split fields (what v1 Plans and `parameters` text hold)."""
    for canonical, pair in SAMPLERS.items():
        if pair == (sampler, schedule):
            return canonical
    if schedule in ("", "Automatic"):
        return canonical_sampler(sampler)
    return canonical_sampler(f"{sampler} {schedule}")
