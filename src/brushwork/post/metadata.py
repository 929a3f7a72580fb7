"""PNG metadata: A1111's `parameters` text plus the full Plan as JSON.

The `parameters` chunk is what AUTOMATIC1111, ComfyUI, CivitAI and image
browsers read; the `brushwork-plan` chunk is what `brushwork info`/`replay`
read, so an image carries everything needed to make it again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

from brushwork.errors import InvalidRequest
from brushwork.contract.version import DEMO_NOTE, VERSION
from brushwork.plan import Plan

if TYPE_CHECKING:
    from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
PLAN_KEY = "brushwork-plan"


def _quote(value: str) -> str:
    """A1111's `quote`: values with separators become JSON strings."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def a1111_parameters(plan: Plan, index: int = 0) -> str:
    """The A1111 `parameters` text for image `index` of `plan`."""
    fields: list[tuple[str, str]] = [
        ("Steps", str(plan.steps)),
        ("Sampler", plan.sampler),
        ("Schedule type", plan.schedule),
        ("CFG scale", f"{plan.cfg:g}"),
        ("Seed", str(plan.seeds[index])),
        ("Size", f"{plan.width}x{plan.height}"),
        ("Model hash", plan.model.short_hash),
        ("Model", plan.model.name),
    ]
    if plan.vae is not None:
        fields += [("VAE hash", plan.vae.short_hash), ("VAE", plan.vae.name)]
    if plan.clip_skip > 1:
        fields.append(("Clip skip", str(plan.clip_skip)))
    if plan.loras:
        fields.append(("Lora hashes", ", ".join(f"{r.name}: {r.short_hash}" for r in plan.loras)))
    fields.append(("Style", plan.style + (f" ({plan.style_type})" if plan.style_type else "")))
    if plan.model.demo:
        fields.append(("Note", DEMO_NOTE))
    fields.append(("Version", f"brushwork {VERSION}"))
    prompt = plan.prompt
    for ref in plan.loras:  # A1111 shows applied LoRAs in the prompt
        prompt += f" <lora:{ref.name}:{ref.weight:g}>"
    lines = [prompt]
    if plan.negative_prompt:
        lines.append(f"Negative prompt: {plan.negative_prompt}")
    lines.append(", ".join(f"{k}: {_quote(v)}" for k, v in fields))
    return "\n".join(lines)


def png_info(plan: Plan, index: int = 0) -> PngInfo:
    """PNG text chunks for image `index`: its own single-image Plan plus A1111 text."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(PARAMETERS_KEY, a1111_parameters(plan, index))
    info.add_itxt(PLAN_KEY, plan.single(index).to_json())
    return info


def read_text_chunks(path: Path) -> dict[str, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return {k: v for k, v in img.info.items() if isinstance(v, str)}
    except FileNotFoundError:
        raise InvalidRequest("image", f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidRequest("image", f"{path} is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise InvalidRequest("image", f"{path} is not an image") from None


def read_plan(path: Path) -> Plan:
    """The Plan embedded in a brushwork PNG (clear error if there is none)."""
    chunks = read_text_chunks(path)
    if PLAN_KEY not in chunks:
        raise InvalidRequest("image", f"{path.name} carries no brushwork plan (not made by brushwork?)")
    return Plan.from_json(chunks[PLAN_KEY])


# The pattern and rules of AUTOMATIC1111's `parse_generation_parameters` (infotext_utils.py).
_FIELD = re.compile(r'\s*([\w ]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def parse_a1111_parameters(text: str) -> dict[str, str]:
    """Parse A1111 `parameters` text into prompt, negative prompt and the key/value fields."""
    lines = text.strip().split("\n")
    result: dict[str, str] = {}
    tail = lines.pop() if lines and len(_FIELD.findall(lines[-1])) >= 3 else ""
    prompt_lines, negative_lines, target = [], [], None
    for line in lines:
        if line.startswith("Negative prompt:"):
            target = negative_lines
            line = line[len("Negative prompt:"):].strip()
        (target if target is not None else prompt_lines).append(line)
    result["Prompt"] = "\n".join(prompt_lines)
    if negative_lines:
        result["Negative prompt"] = "\n".join(negative_lines)
    for key, value in _FIELD.findall(tail):
        value = value.strip()
        result[key.strip()] = json.loads(value) if value.startswith('"') else value
    return result
