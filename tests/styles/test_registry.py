"""Discovery (built-in, folder .py/.toml, entry points, broken files) and keyword routing."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from brushwork.errors import InvalidRequest, NotFound
from brushwork.styles.recipe import Recipe
from brushwork.styles.registry import StyleRegistry
from brushwork.styles.spec import StyleSpec


def _spec(name: str, keywords: tuple[str, ...] = (), types: dict[str, str] | None = None) -> StyleSpec:
    def build(prompt: str, type: str | None = None, **_: object) -> Recipe:
        return Recipe(model="sd15", prompt=f"{name}: {prompt}" + (f" [{type}]" if type else ""))

    return StyleSpec(name=name, build=build, keywords=keywords, types=types or {}, source="test")


def test_builtin_styles_are_discovered():
    registry = StyleRegistry.discover(None, include_entry_points=False)
    assert len(registry) >= 12
    assert {"general", "anime", "cars", "watercolor", "realistic_portrait"} <= set(registry.names())
    assert registry.errors == []


def test_folder_py_and_toml_styles_and_broken_file(tmp_path: Path):
    (tmp_path / "neon.py").write_text(textwrap.dedent('''
        from brushwork import Recipe, style

        @style(name="neon", keywords=["neon"], description="neon lights", types={"pink": "pink glow"})
        def neon(prompt, type=None, **options):
            return Recipe(model="sd15", prompt=f"neon, {prompt}" + (", pink" if type == "pink" else ""))
    '''))
    (tmp_path / "oil.toml").write_text(textwrap.dedent('''
        name = "oil"
        keywords = ["oil painting"]
        model = "dreamshaper"
        prompt = "oil painting of {prompt}, impasto"
        steps = 30
        [types.dutch]
        description = "Dutch golden age"
        prompt = "rembrandt lighting"
        loras = [{ name = "dutch", weight = 0.5 }]
    '''))
    (tmp_path / "broken.py").write_text("import does_not_exist_anywhere\n")
    (tmp_path / "bad.toml").write_text('name = "bad"\nmodel = "sd15"\nprompt = "no placeholder"\n')
    (tmp_path / "_private.py").write_text("raise SystemExit('must not be imported')\n")

    registry = StyleRegistry.discover(tmp_path, include_entry_points=False)

    assert {"neon", "oil"} <= set(registry.names())
    assert "general" in registry.names()  # built-ins still there
    failed = {Path(e.source).name: e.message for e in registry.errors}
    assert set(failed) == {"broken.py", "bad.toml"}
    assert "does_not_exist_anywhere" in failed["broken.py"]
    assert "{prompt}" in failed["bad.toml"]

    _, recipe = registry.recipe("a city", style="neon", type="pink")
    assert recipe.prompt == "neon, a city, pink"
    spec, recipe = registry.recipe("a windmill", style="oil", type="dutch")
    assert recipe.prompt == "oil painting of a windmill, impasto, rembrandt lighting"
    assert [(lora.name, lora.weight) for lora in recipe.loras] == [("dutch", 0.5)]
    assert recipe.sampling.steps == 30 and spec.source.endswith("oil.toml")
    assert registry.route("an oil painting of a pear").name == "oil"


def test_folder_style_overrides_builtin_with_a_note(tmp_path: Path):
    (tmp_path / "anime.toml").write_text('name = "anime"\nmodel = "sd15"\nprompt = "mine: {prompt}"\n')
    registry = StyleRegistry.discover(tmp_path, include_entry_points=False)
    assert registry.recipe("x", style="anime")[1].prompt == "mine: x"
    assert any("overrides" in note for note in registry.notes)


def test_entry_point_styles_are_discovered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "bw_plugin_styles.py").write_text(textwrap.dedent('''
        from brushwork import Recipe, style

        @style(name="plugin_style", keywords=["plugintest"])
        def plugin(prompt, **options):
            return Recipe(model="sd15", prompt=f"plugin {prompt}")
    '''))
    dist = tmp_path / "bw_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: bw-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[brushwork.styles]\nplugin = bw_plugin_styles\nbroken = no_such_module_x\n")
    monkeypatch.syspath_prepend(str(tmp_path))

    registry = StyleRegistry.discover(None)

    assert "plugin_style" in registry.names()
    assert registry.route("a plugintest scene").name == "plugin_style"
    assert any("no_such_module_x" in e.source for e in registry.errors)
    sys.modules.pop("bw_plugin_styles", None)


def test_routing_scores_ties_and_default():
    registry = StyleRegistry([
        _spec("general"), _spec("anime", ("anime",)), _spec("closeup", ("closeup", "anime face")),
        _spec("zeta", ("cat",)), _spec("alpha", ("cat",)),
    ])
    assert registry.route("an anime girl").name == "anime"
    assert registry.route("ANIME face, closeup").name == "closeup"  # two matches beat one
    assert registry.route("an anime face").name == "closeup"  # longer match wins a count tie
    assert registry.route("a cat").name == "alpha"  # full tie: alphabetical
    assert registry.route("a scatter plot").name == "general"  # whole words only ('cat' ≠ 'scatter')
    assert registry.route("nothing matches").name == "general"


def test_unknown_style_and_type_list_valid_names():
    registry = StyleRegistry([_spec("general"), _spec("cars", ("car",), {"rx7": "", "f1": ""})])
    with pytest.raises(NotFound) as info:
        registry.recipe("x", style="carz")
    assert info.value.valid == ["auto", "cars", "general"]
    with pytest.raises(NotFound) as info:
        registry.recipe("x", style="cars", type="beetle")
    assert info.value.field == "type" and info.value.valid == ["f1", "rx7"]
    with pytest.raises(InvalidRequest, match="has no types"):
        registry.recipe("x", style="general", type="rx7")
    assert registry.recipe("x", style="cars", type="rx7")[1].prompt == "cars: x [rx7]"
    assert registry.recipe("a car", style="AUTO")[0].name == "cars"
