"""Declarative styles: one `.toml` file describes a style with no Python.

```toml
name = "neon"
keywords = ["neon", "cyberpunk"]
description = "Neon-lit night scenes"
model = "dreamshaper"
prompt = "neon lights, {prompt}, night, cinematic"   # {prompt} is the user's words
negative_prompt = "blurry, lowres"
sampler = "DPM++ 2M Karras"
width = 512
height = 768
steps = 25
cfg = 7.0
loras = [{ name = "neon_style", weight = 0.7 }]

[types.pink]
description = "Pink palette"
prompt = "pink neon"                                # appended to the prompt
loras = [{ name = "pink_neon", weight = 0.6 }]      # added to the style's LoRAs
```
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.spec import StyleSpec, spec_of, style


class TomlType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    loras: list[LoraRef] = Field(default_factory=list)


class TomlStyle(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    keywords: list[str] = Field(default_factory=list)
    description: str = ""
    model: str
    prompt: str = "{prompt}"
    negative_prompt: str = ""
    sampler: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    cfg: float | None = None
    clip_skip: int = 1
    loras: list[LoraRef] = Field(default_factory=list)
    vae: str | None = None
    types: dict[str, TomlType] = Field(default_factory=dict)


def _join(*parts: str) -> str:
    return ", ".join(p.strip() for p in parts if p.strip())


def load_toml_style(path: Path) -> StyleSpec:
    """Parse a style file; raises ValueError naming the file and the bad field."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        decl = TomlStyle.model_validate(data)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path.name}: invalid TOML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{path.name}: field {where!r}: {err['msg']}") from None
    if "{prompt}" not in decl.prompt:
        raise ValueError(f"{path.name}: field 'prompt' must contain the placeholder {{prompt}}")

    def build(prompt: str, type: str | None = None, **_: Any) -> Recipe:
        variant = decl.types[type] if type else TomlType()
        return Recipe(
            model=decl.model,
            prompt=_join(decl.prompt.replace("{prompt}", prompt), variant.prompt),
            negative_prompt=_join(decl.negative_prompt, variant.negative_prompt),
            sampler=decl.sampler,
            width=decl.width,
            height=decl.height,
            steps=decl.steps,
            cfg=decl.cfg,
            clip_skip=decl.clip_skip,
            loras=(*decl.loras, *variant.loras),
            vae=decl.vae,
        )

    build.__module__ = f"brushwork_user_styles.{path.stem}"
    build.__qualname__ = decl.name
    decorated = style(
        name=decl.name,
        keywords=decl.keywords,
        description=decl.description,
        types={k: v.description for k, v in decl.types.items()},
    )(build)
    spec = spec_of(decorated)
    assert spec is not None  # just attached by @style
    return replace(spec, source=str(path))
