"""An optional safety filter: a pluggable post stage, off by default.

A filter is any callable `(images: list[PIL.Image]) -> list[bool]` (True =
block that image), named in settings as `module:callable`, or by the name of
a `brushwork.safety` entry point. A blocked image is replaced by a black one
of the same size, and the Result and PNG metadata record it, as A1111 does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from brushwork.errors import BrushworkError, InvalidRequest

ENTRY_POINT_GROUP = "brushwork.safety"
SafetyFilter = Callable[[list[Any]], list[bool]]


def load_filter(name: str) -> SafetyFilter:
    """The filter named `module:callable` or by a `brushwork.safety` entry point."""
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise InvalidRequest("setting safety_filter", f"cannot load {name!r}: {exc}") from None
    else:
        found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
        if not found:
            valid = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
            raise InvalidRequest("setting safety_filter",
                                 f"no {ENTRY_POINT_GROUP} entry point {name!r}; installed: {', '.join(valid) or '(none)'}"
                                 " (or give module:callable)")
        target = found[0].load()
    if not callable(target):
        raise InvalidRequest("setting safety_filter", f"{name!r} is not callable")
    return target  # type: ignore[no-any-return]


def apply_filter(images: list[Any], name: str | None) -> tuple[list[Any], list[bool]]:
    """Run the configured filter; blocked images become black. Returns (images, blocked flags)."""
    if not name:
        return images, [False] * len(images)
    verdicts = load_filter(name)(list(images))
    if not isinstance(verdicts, (list, tuple)) or len(verdicts) != len(images):
        raise BrushworkError(f"safety filter {name!r} must return one True/False per image")
    from PIL import Image

    out = [Image.new("RGB", img.size) if bool(blocked) else img for img, blocked in zip(images, verdicts, strict=True)]
    return out, [bool(v) for v in verdicts]
