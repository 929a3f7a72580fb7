"""PNG metadata: A1111's `parameters` text plus the full Plan as JSON.

The `parameters` chunk is what AUTOMATIC1111, ComfyUI, CivitAI and image
browsers read; the `brushwork-plan` chunk is what `brushwork info`/`replay`
read, so an image carries everything needed to make it again.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brushwork.contract.samplers import a1111_fields
from brushwork.contract.version import DEMO_NOTE, VERSION
from brushwork.errors import InvalidRequest
from brushwork.plan import Plan
from brushwork.post.png_read import read_text_chunks

if TYPE_CHECKING:
    from PIL.PngImagePlugin import PngInfo

PARAMETERS_KEY = "parameters"
PLAN_KEY = "brushwork-plan"


def _quote(value: str) -> str:
    """A1111's `quote`: values with separators become JSON strings."""
    return json.dumps(value, ensure_ascii=False) if any(c in value for c in ",:\n") else value


def _sampling_fields(plan: Plan, index: int) -> list[tuple[str, str]]:
    sampler, schedule = a1111_fields(plan.sampler)
    return [
        ("Steps", str(plan.steps)),
        ("Sampler", sampler),
        ("Schedule type", schedule),
        ("CFG scale", f"{plan.cfg:g}"),
        ("Seed", str(plan.seeds[index])),
        ("Size", f"{plan.width}x{plan.height}"),
        ("Model hash", plan.model.short_hash),
        ("Model", plan.model.name),
    ]


def _mode_fields(plan: Plan) -> list[tuple[str, str]]:
    """A1111's keys for img2img, inpainting, hires fix, ControlNet (sd-webui-controlnet) and extras."""
    fields: list[tuple[str, str]] = []
    if plan.init is not None and plan.init.init_image is not None:
        fields += [("Denoising strength", f"{plan.init.strength:g}"), ("Init image hash", plan.init.init_image.short)]
        if plan.init.resize_mode != "just_resize":
            fields.append(("Resize mode", (plan.init.resize_mode or "").replace("_", " ").capitalize()))
    if plan.mask is not None and plan.mask.mask_image is not None:
        fields += [("Mask blur", str(plan.mask.mask_blur)), ("Mask hash", plan.mask.mask_image.short)]
        if plan.mask.invert_mask:
            fields.append(("Mask mode", "Inpaint not masked"))
        if plan.mask.masked_content != "original":
            fields.append(("Masked content", (plan.mask.masked_content or "").replace("_", " ")))
        if plan.mask.inpaint_area == "masked":
            fields += [("Inpaint area", "Only masked"), ("Masked area padding", str(plan.mask.inpaint_padding))]
    if plan.outpaint is not None:
        fields.append(("Outpaint", "left {}, right {}, up {}, down {}".format(*plan.outpaint.sides())))
    if plan.hires is not None:
        fields += [("Denoising strength", f"{plan.hires.hr_denoise:g}"), ("Hires upscale", f"{plan.hires.hr_scale:g}")]
        if plan.hires.hr_steps:
            fields.append(("Hires steps", str(plan.hires.hr_steps)))
        fields.append(("Hires upscaler", plan.hires.hr_upscaler or ""))
    for number, unit in enumerate(plan.controls):
        parts = [f"Module: {unit.preprocessor}", f"Model: {unit.model} [{(unit.sha256 or '')[:8]}]",
                 f"Weight: {unit.scale:g}", f"Guidance Start: {unit.start:g}", f"Guidance End: {unit.end:g}"]
        if unit.preprocessor == "canny":
            parts += [f"Threshold A: {unit.low_threshold}", f"Threshold B: {unit.high_threshold}"]
        fields.append((f"ControlNet {number}", ", ".join(parts)))
    if plan.post is not None:
        for number, step in enumerate(plan.post.upscale or ()):
            suffix = "" if number == 0 else f" {number + 1}"
            fields += [(f"Postprocess upscaler{suffix}", step.upscaler), (f"Postprocess upscale by{suffix}", f"{step.scale:g}")]
        if plan.post.resize_to is not None:
            fields.append(("Postprocess resize to", "{}x{}".format(*plan.post.resize_to)))
    return fields


# A1111's checkpoint "short hash" (CheckpointInfo.shorthash): the first 10 hex digits of the file's sha256.
CHECKPOINT_SHORT_HASH = 10
_REFINER_VALUE = re.compile(r"^(?P<name>.*?)(?: \[(?P<hash>[0-9a-fA-F]+)\])?$")


def _hash_list_name(name: str) -> str:
    return name.replace(":", "").replace(",", "")


def refiner_fields(plan: Plan) -> list[tuple[str, str]]:
    """A1111's `Refiner: name [shorthash]` and `Refiner switch at: 0.8`, written when the refiner ran.

    As in A1111 (`apply_refiner`), a switch of 1.0 never hands over, so it
    writes nothing; with hires fix the refiner finishes the first pass, which
    A1111 records as `Hires refiner: first pass`.
    """
    refine = plan.refine
    if refine is None or refine.refiner is None or (refine.refiner_switch or 1.0) >= 1.0:
        return []
    fields = [("Refiner", f"{refine.refiner} [{(refine.refiner_sha256 or '')[:CHECKPOINT_SHORT_HASH]}]"),
              ("Refiner switch at", f"{refine.refiner_switch:g}")]
    if plan.hires is not None:
        fields.append(("Hires refiner", "first pass"))
    return fields


@dataclass(frozen=True)
class RefinerInfo:
    """The refiner an A1111 `parameters` text names: catalog-style name, short hash (if given), switch."""

    name: str
    short_hash: str | None
    switch: float | None


def read_refiner(fields: Mapping[str, str]) -> RefinerInfo | None:
    """The refiner of parsed A1111 fields (`parse_a1111_parameters`), or None when the image used none."""
    value = fields.get("Refiner", "").strip()
    if not value or value == "None":
        return None
    match = _REFINER_VALUE.match(value)
    assert match is not None  # the pattern matches any text
    switch_text = fields.get("Refiner switch at")
    try:
        switch = float(switch_text) if switch_text is not None else None
    except ValueError:
        switch = None
    return RefinerInfo(match["name"], match["hash"].lower() if match["hash"] else None, switch)


def read_hash_list(fields: Mapping[str, str], key: str) -> dict[str, str]:
    """`Lora hashes` / `TI hashes` ("name: hash, name2: hash2") as name -> short hash."""
    out: dict[str, str] = {}
    for item in fields.get(key, "").split(","):
        name, sep, digest = item.rpartition(":")
        if sep and name.strip() and digest.strip():
            out[name.strip()] = digest.strip()
    return out


def a1111_parameters(plan: Plan, index: int = 0, filtered: bool = False) -> str:
    """The A1111 `parameters` text for image `index` of `plan`."""
    fields = _sampling_fields(plan, index)
    if plan.vae is not None:
        fields += [("VAE hash", plan.vae.short_hash), ("VAE", plan.vae.name)]
    if plan.clip_skip > 1:
        fields.append(("Clip skip", str(plan.clip_skip)))
    fields += _mode_fields(plan)
    fields += refiner_fields(plan)
    if plan.loras:
        fields.append(("Lora hashes", ", ".join(f"{r.name}: {r.short_hash}" for r in plan.loras)))
    if plan.embeddings:  # A1111 strips ':' and ',' from the names so the list stays parseable
        fields.append(("TI hashes", ", ".join(f"{_hash_list_name(r.name)}: {r.short_hash}" for r in plan.embeddings)))
    fields.append(("Style", plan.style + (f" ({plan.style_type})" if plan.style_type else "")))
    if filtered:
        fields.append(("Safety filter", "blocked"))
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


def png_info(plan: Plan, index: int = 0, filtered: bool = False) -> PngInfo:
    """PNG text chunks for image `index`: its own single-image Plan plus A1111 text."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_itxt(PARAMETERS_KEY, a1111_parameters(plan, index, filtered))
    info.add_itxt(PLAN_KEY, plan.single(index).to_json())
    return info


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
