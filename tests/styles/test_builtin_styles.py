"""Contract test every built-in style must pass.

Imports each module of `brushwork.styles.builtin` directly (no registry), so a
broken style is reported by name without depending on discovery code.
"""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import brushwork.styles.builtin as builtin_pkg
from brushwork.contract.samplers import SAMPLERS
from brushwork.styles.recipe import Recipe
from brushwork.styles.spec import StyleSpec, spec_of

ALLOWED_SAMPLERS = set(SAMPLERS)  # every sampler brushwork names
ALLOWED_MODELS = {"sd15", "dreamshaper", "meinamix", "realistic-vision", "sdxl", "juggernaut-xl", "sdxl-turbo"}
SAMPLE_PROMPT = "a lighthouse on a rocky cliff at dusk, Ünïcode & (parens)"


def _collect() -> list[StyleSpec]:
    specs: list[StyleSpec] = []
    for info in pkgutil.iter_modules(builtin_pkg.__path__, builtin_pkg.__name__ + "."):
        module = importlib.import_module(info.name)
        for obj in vars(module).values():
            spec = spec_of(obj)
            if spec is not None and spec.source.startswith(module.__name__ + ":"):
                specs.append(spec)
    return specs


SPECS = _collect()
BY_NAME = {spec.name: spec for spec in SPECS}


def test_names_are_unique_and_enough_styles() -> None:
    names = [spec.name for spec in SPECS]
    assert len(names) == len(set(names)), f"duplicate style names: {sorted(names)}"
    assert len(names) >= 14, names
    for required in (
        "general", "anime", "closeup_anime", "ghost", "hyperrealistic", "cars", "space",
        "drawing", "horror", "zombie", "papercut", "watercolor", "realistic_portrait",
        "sdxl_photo",
    ):  # fmt: skip
        assert required in BY_NAME, required


def test_keywords_are_not_shared_between_styles() -> None:
    owner: dict[str, str] = {}
    for spec in SPECS:
        assert len(spec.keywords) == len(set(spec.keywords)), spec.name
        for keyword in spec.keywords:
            assert keyword == keyword.lower().strip(), (spec.name, keyword)
            assert keyword not in owner, f"{keyword!r} in {owner.get(keyword)} and {spec.name}"
            owner[keyword] = spec.name


def _check_recipe(spec: StyleSpec, recipe: Recipe) -> None:
    assert isinstance(recipe, Recipe)
    assert SAMPLE_PROMPT in recipe.prompt, spec.name
    assert recipe.negative_prompt, spec.name
    assert recipe.size.width is not None and recipe.size.height is not None
    for side in (recipe.size.width, recipe.size.height):
        assert side % 8 == 0 and 64 <= side <= 2048, (spec.name, side)
    assert recipe.sampling.steps is not None and 1 <= recipe.sampling.steps <= 150, spec.name
    assert recipe.sampling.cfg is not None and 0 <= recipe.sampling.cfg <= 30, spec.name
    assert recipe.sampling.sampler in ALLOWED_SAMPLERS, (spec.name, recipe.sampling.sampler)
    assert recipe.model in ALLOWED_MODELS, (spec.name, recipe.model)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_recipe_is_well_formed(spec: StyleSpec) -> None:
    _check_recipe(spec, spec.recipe(SAMPLE_PROMPT))
    assert spec.description, spec.name


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_unknown_options_are_ignored(spec: StyleSpec) -> None:
    assert spec.recipe(SAMPLE_PROMPT, unknown_option=1) == spec.recipe(SAMPLE_PROMPT)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_type_changes_the_recipe(spec: StyleSpec) -> None:
    plain = spec.recipe(SAMPLE_PROMPT)
    for type_name in spec.types:
        typed = spec.recipe(SAMPLE_PROMPT, type=type_name)
        _check_recipe(spec, typed)
        assert (typed.prompt, typed.loras) != (plain.prompt, plain.loras), (spec.name, type_name)


def test_cars_types_carry_their_lora() -> None:
    cars = BY_NAME["cars"]
    assert set(cars.types) == {"rx7", "f1", "sedan", "speedtail"}
    assert cars.recipe(SAMPLE_PROMPT).loras == ()
    for type_name in cars.types:
        loras = cars.recipe(SAMPLE_PROMPT, type=type_name).loras
        assert len(loras) == 1 and loras[0].name == type_name
        assert 0 < loras[0].weight <= 1


def test_general_is_neutral_default() -> None:
    general = BY_NAME["general"]
    assert general.keywords == ()
    assert general.recipe(SAMPLE_PROMPT).model == "sd15"


def test_sdxl_styles_use_sdxl_sizes() -> None:
    for spec in SPECS:
        recipe = spec.recipe(SAMPLE_PROMPT)
        if recipe.model in {"sdxl", "juggernaut-xl"}:
            assert recipe.size.width * recipe.size.height >= 768 * 768, spec.name
        else:
            assert max(recipe.size.width, recipe.size.height) <= 768, spec.name
