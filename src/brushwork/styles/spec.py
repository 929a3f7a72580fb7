"""The `@style` decorator and the description it attaches to a style function.

The decorator only annotates the function; it registers nothing. Discovery
(`StyleRegistry.discover`) finds annotated functions in modules it imports, so
no registry is ever filled by import order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from brushwork.plan import NAME_PATTERN
from brushwork.styles.recipe import Recipe

STYLE_ATTRIBUTE = "__brushwork_style__"


class StyleFunction(Protocol):
    def __call__(self, prompt: str, **options: Any) -> Recipe: ...


@dataclass(frozen=True)
class StyleSpec:
    """A discovered style: its identity, routing keywords, declared types and builder."""

    name: str
    build: Callable[..., Recipe]
    keywords: tuple[str, ...] = ()
    description: str = ""
    types: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    def recipe(self, prompt: str, type: str | None = None, **options: Any) -> Recipe:
        """Call the style function; `type` has already been validated by the registry."""
        if type is not None:
            options["type"] = type
        result = self.build(prompt, **options)
        if not isinstance(result, Recipe):
            raise TypeError(
                f"style {self.name!r} ({self.source}) returned {type_name(result)}, expected Recipe"
            )
        return result


def type_name(value: object) -> str:
    return value.__class__.__name__


def style(
    *,
    name: str,
    keywords: Iterable[str] = (),
    description: str = "",
    types: Mapping[str, str] | None = None,
) -> Callable[[Callable[..., Recipe]], Callable[..., Recipe]]:
    """Mark `fn(prompt, **options) -> Recipe` as a style.

    `types` maps each variant name (``--type``) to a one-line description; the
    function receives the chosen one as its ``type`` keyword argument.
    """
    clean_name = name.strip().lower()
    for what, value in [("style name", clean_name), *(("type name", t) for t in (types or {}))]:
        if not re.fullmatch(NAME_PATTERN, value):
            raise ValueError(f"{what} {value!r} must be 1-64 lowercase letters, digits, '-' or '_' "
                             "(it becomes part of file names)")

    def decorate(fn: Callable[..., Recipe]) -> Callable[..., Recipe]:
        spec = StyleSpec(
            name=clean_name,
            build=fn,
            keywords=tuple(k.strip().lower() for k in keywords if k.strip()),
            description=description,
            types=dict(types or {}),
            source=f"{fn.__module__}:{fn.__qualname__}",
        )
        setattr(fn, STYLE_ATTRIBUTE, spec)
        return fn

    return decorate


def spec_of(obj: object) -> StyleSpec | None:
    """The StyleSpec attached to `obj` by `@style`, if any."""
    spec = getattr(obj, STYLE_ATTRIBUTE, None)
    return spec if isinstance(spec, StyleSpec) else None
