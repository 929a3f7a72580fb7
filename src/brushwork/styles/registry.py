"""Style discovery and keyword routing.

Styles come from three places, later ones overriding earlier ones by name:
1. built-in modules in `brushwork.styles.builtin`,
2. packages exposing the `brushwork.styles` entry-point group,
3. the user styles folder (`*.py` with `@style` functions, `*.toml` declarations).

A source that fails to load is recorded in `errors` and skipped; the rest work.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import pkgutil
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any

from brushwork.errors import BrushworkError, InvalidRequest, NotFound
from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import StyleSpec, spec_of
from brushwork.styles.toml_style import load_toml_style

AUTO = "auto"
DEFAULT_STYLE = "general"
ENTRY_POINT_GROUP = "brushwork.styles"
BUILTIN_PACKAGE = "brushwork.styles.builtin"


@dataclass(frozen=True)
class StyleLoadError:
    """A style source that could not be loaded, and why."""

    source: str
    message: str


def specs_in_module(module: ModuleType) -> list[StyleSpec]:
    """Styles defined (not merely imported) in `module`."""
    found = []
    for obj in vars(module).values():
        spec = spec_of(obj)
        if spec is not None and getattr(obj, "__module__", None) == module.__name__:
            found.append(spec)
    return found


def _import_file(path: Path) -> ModuleType:
    digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
    name = f"brushwork_user_styles.{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class StyleRegistry:
    """An immutable set of styles plus what went wrong finding them."""

    def __init__(
        self,
        specs: Iterable[StyleSpec] = (),
        errors: Iterable[StyleLoadError] = (),
        notes: Iterable[str] = (),
    ) -> None:
        self._specs: dict[str, StyleSpec] = {}
        self.notes: list[str] = list(notes)
        for spec in specs:
            previous = self._specs.get(spec.name)
            if previous is not None:
                self.notes.append(f"style {spec.name!r} from {spec.source} overrides {previous.source}")
            self._specs[spec.name] = spec
        self.errors: list[StyleLoadError] = list(errors)

    # -- discovery -----------------------------------------------------------------

    @classmethod
    def discover(
        cls,
        styles_dir: Path | None = None,
        *,
        include_builtin: bool = True,
        include_entry_points: bool = True,
    ) -> StyleRegistry:
        specs: list[StyleSpec] = []
        errors: list[StyleLoadError] = []
        if include_builtin:
            cls._collect_builtin(specs, errors)
        if include_entry_points:
            cls._collect_entry_points(specs, errors)
        if styles_dir is not None and styles_dir.is_dir():
            cls._collect_folder(styles_dir, specs, errors)
        return cls(specs, errors)

    @staticmethod
    def _collect_builtin(specs: list[StyleSpec], errors: list[StyleLoadError]) -> None:
        package = importlib.import_module(BUILTIN_PACKAGE)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            name = f"{BUILTIN_PACKAGE}.{info.name}"
            try:
                specs.extend(specs_in_module(importlib.import_module(name)))
            except Exception as exc:  # a broken built-in must not hide the others
                errors.append(StyleLoadError(name, _describe(exc)))

    @staticmethod
    def _collect_entry_points(specs: list[StyleSpec], errors: list[StyleLoadError]) -> None:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            source = f"entry point {ep.name} ({ep.value})"
            try:
                target: Any = ep.load()
            except BaseException as exc:  # SystemExit from a plugin must not end discovery
                if isinstance(exc, KeyboardInterrupt):
                    raise
                errors.append(StyleLoadError(source, _describe(exc)))
                continue
            if isinstance(target, ModuleType):
                found = specs_in_module(target)
            else:
                spec = spec_of(target)
                found = [spec] if spec is not None else []
            if not found:
                errors.append(StyleLoadError(source, "exposes no @style function"))
            specs.extend(found)

    @staticmethod
    def _collect_folder(folder: Path, specs: list[StyleSpec], errors: list[StyleLoadError]) -> None:
        for path in sorted(folder.iterdir()):
            if path.name.startswith(("_", ".")):
                continue
            try:
                if path.suffix == ".py":
                    found = [replace(s, source=str(path)) for s in specs_in_module(_import_file(path))]
                    if not found:
                        errors.append(StyleLoadError(str(path), "defines no @style function"))
                    specs.extend(found)
                elif path.suffix == ".toml":
                    specs.append(load_toml_style(path))
            except BaseException as exc:  # SyntaxError, SystemExit from a user file...
                if isinstance(exc, KeyboardInterrupt):
                    raise
                errors.append(StyleLoadError(str(path), _describe(exc)))

    # -- lookup ----------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._specs)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._specs.values(), key=lambda s: s.name))

    def names(self) -> list[str]:
        return sorted(self._specs)

    def get(self, name: str) -> StyleSpec:
        key = name.strip().lower()
        if key not in self._specs:
            raise NotFound("style", name, [*self._specs, AUTO])
        return self._specs[key]

    def route(self, prompt: str) -> StyleSpec:
        """Pick the style whose keywords best match the prompt.

        Score = (keywords matched as whole words, characters matched); ties go
        to the alphabetically first name; no match gives the neutral default.
        """
        text = prompt.lower()
        ranked = []
        for spec in self._specs.values():
            matched = [k for k in spec.keywords if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", text)]
            if matched:
                ranked.append((-len(matched), -sum(len(k) for k in matched), spec.name))
        if ranked:
            return self._specs[min(ranked)[2]]
        if DEFAULT_STYLE in self._specs:
            return self._specs[DEFAULT_STYLE]
        raise NotFound("style", AUTO, self._specs)

    def select(self, prompt: str, style: str = AUTO) -> StyleSpec:
        return self.route(prompt) if style.strip().lower() == AUTO else self.get(style)

    def recipe(
        self, prompt: str, style: str = AUTO, type: str | None = None, **options: Any
    ) -> tuple[StyleSpec, Recipe]:
        """Resolve a style (routing if `auto`), validate `type`, and build its Recipe."""
        spec = self.select(prompt, style)
        if type is not None and type not in spec.types:
            routed = " (picked from the prompt's words; name a style to choose another)" \
                if style.strip().lower() == AUTO else ""
            if not spec.types:
                raise InvalidRequest("type", f"style {spec.name!r}{routed} has no types")
            raise NotFound("type", type, spec.types)
        try:
            return spec, spec.recipe(prompt, type=type, **options)
        except (InvalidRequest, NotFound):
            raise
        except Exception as exc:
            raise BrushworkError(f"style {spec.name!r} ({spec.source}) failed: {_describe(exc)}") from exc
