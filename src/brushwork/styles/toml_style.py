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
hr_scale = 2.0                                      # any Recipe field, flat
loras = [{ name = "neon_style", weight = 0.7 }]

[types.pink]
description = "Pink palette"
prompt = "pink neon"                                # appended to the prompt
loras = [{ name = "pink_neon", weight = 0.6 }]      # added to the style's LoRAs
```

Every field other than `name`, `keywords`, `description` and `types` is a
`Recipe` field (flat group names like `steps` or `mask_blur` work), checked
when the file is loaded so a typo names the file and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brushwork.styles.recipe import LoraRef, Recipe
from brushwork.styles.spec import StyleSpec, spec_of, style

PLACEHOLDER = "{prompt}"


class TomlType(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    prompt: str = ""
    negative_prompt: str = ""
    loras: list[LoraRef] = Field(default_factory=list)


class TomlStyle(BaseModel):
    """The style's identity; everything else in the file is its Recipe."""

    model_config = ConfigDict(extra="forbid")

    name: str
    keywords: list[str] = Field(default_factory=list)
    description: str = ""
    types: dict[str, TomlType] = Field(default_factory=dict)


def _join(*parts: str) -> str:
    return ", ".join(p.strip() for p in parts if p.strip())


def _field_error(path: Path, exc: ValidationError) -> ValueError:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "file"
    return ValueError(f"{path.name}: field {where!r}: {err['msg']}")


def load_toml_style(path: Path) -> StyleSpec:
    """Parse a style file; raises ValueError naming the file and the bad field."""
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path.name}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path.name}: not UTF-8 text") from None
    identity = {key: data.pop(key) for key in list(data) if key in TomlStyle.model_fields}
    data.setdefault("prompt", PLACEHOLDER)
    try:
        decl = TomlStyle.model_validate(identity)
        template = Recipe.model_validate(data)  # checked now: a typo fails at load, not at generate time
    except ValidationError as exc:
        raise _field_error(path, exc) from None
    if PLACEHOLDER not in template.prompt:
        raise ValueError(f"{path.name}: field 'prompt' must contain the placeholder {PLACEHOLDER}")

    def build(prompt: str, type: str | None = None, **_: Any) -> Recipe:
        variant = decl.types[type] if type else TomlType()
        return template.model_copy(update={
            "prompt": _join(template.prompt.replace(PLACEHOLDER, prompt), variant.prompt),
            "negative_prompt": _join(template.negative_prompt, variant.negative_prompt),
            "loras": (*template.loras, *variant.loras),
        })

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
