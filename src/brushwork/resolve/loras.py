"""LoRAs of a request: A1111's `<lora:name:weight>` prompt tags, and which family a LoRA file is for.

Tags are taken out of the prompt exactly the way AUTOMATIC1111 does (the tag
text is removed, nothing else), so the encoder never sees them and a prompt
pasted from A1111 encodes the same. Unlike A1111, a tag that cannot apply
is an error instead of a console line nobody reads: an unknown name lists the
installed LoRAs, a bad weight says what is allowed. Pure Python, no torch.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from brushwork.contract.params import LORA_WEIGHT_MAX, LoraWeight
from brushwork.errors import InvalidRequest

# A1111's extra-network syntax (modules/extra_networks.py `re_extra_net`): <kind:arg1:arg2...>
_TAG = re.compile(r"<(\w+):([^>]+)>")
_LORA_KINDS = ("lora", "lyco")  # A1111 treats <lyco:> as an alias of <lora:> since 1.5
_OPEN_TAG = re.compile(r"<(lora|lyco):", re.IGNORECASE)


def _weight(tag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest("prompt", f"{tag}: the weight {text!r} is not a number "
                                       "(expected <lora:NAME> or <lora:NAME:WEIGHT>)") from None
    if not math.isfinite(value) or abs(value) > LORA_WEIGHT_MAX:
        raise InvalidRequest("prompt", f"{tag}: the weight must be between {-LORA_WEIGHT_MAX:g} and "
                                       f"{LORA_WEIGHT_MAX:g}, got {text}")
    return value


def _parse_tag(kind: str, args: str) -> LoraWeight:
    tag = f"<{kind}:{args}>"
    parts = args.split(":")
    name = parts[0].strip()
    if not name:
        raise InvalidRequest("prompt", f"{tag} names no LoRA (expected <lora:NAME> or <lora:NAME:WEIGHT>)")
    if len(parts) > 2:
        raise InvalidRequest("prompt", f"{tag}: separate text-encoder/UNet weights are not supported; "
                                       "give one weight, <lora:NAME:WEIGHT>")
    weight = _weight(tag, parts[1].strip()) if len(parts) == 2 else 1.0
    return LoraWeight(name=name, weight=weight)


def extract_lora_tags(prompt: str) -> tuple[str, list[LoraWeight]]:
    """The prompt without its `<lora:…>`/`<lyco:…>` tags, and the LoRAs they name, in order."""
    loras: list[LoraWeight] = []

    def take(match: re.Match[str]) -> str:
        kind, args = match.group(1), match.group(2)
        if kind.lower() not in _LORA_KINDS:
            raise InvalidRequest("prompt", f"<{kind}:{args}> is not supported: brushwork applies <lora:NAME:WEIGHT> "
                                           "and <lyco:NAME:WEIGHT> tags (hypernetworks and other extra networks "
                                           "are not supported)")
        loras.append(_parse_tag(kind, args))
        return ""

    text = _TAG.sub(take, prompt)
    if loras:  # "a fox <lora:x>, sharp" → "a fox, sharp": the same tokens, tidier metadata
        text = re.sub(r"[ \t]+,", ",", re.sub(r"[ \t]{2,}", " ", text))
    unclosed = _OPEN_TAG.search(text)
    if unclosed:
        rest = text[unclosed.start():unclosed.start() + 40]
        raise InvalidRequest("prompt", f"the tag {rest!r}… is never closed with '>' (expected <lora:NAME:WEIGHT>)")
    return text.strip(), loras


def refuse_tags(field: str, text: str) -> None:
    """LoRA tags belong in the prompt; in a negative prompt they would silently do nothing."""
    match = _TAG.search(text) or _OPEN_TAG.search(text)
    if match:
        raise InvalidRequest(field, f"{match.group(0)!r}: LoRA tags go in the prompt, not the negative prompt")


def lora_family(path: Path) -> str | None:
    """The model family a LoRA file was made for, from its tensor names and shapes (None: cannot tell).

    SDXL LoRAs carry a second text encoder (`lora_te2_`/`text_encoder_2.`) or cross-attention inputs
    2048 wide; SD 1.5 ones are 768 wide; Flux LoRAs target a `transformer`.
    """
    if path.suffix.lower() != ".safetensors":
        return None
    from brushwork.models.offline_configs import read_checkpoint_shapes

    try:
        shapes = read_checkpoint_shapes(path)
    except (ValueError, OSError):
        return None  # unreadable: the load reports it in its own words
    names = list(shapes)
    if any(k.startswith(("lora_te2_", "lora_te1_", "text_encoder_2.")) for k in names):
        return "sdxl"
    if any(k.startswith(("transformer.", "lora_transformer_")) or "double_blocks" in k for k in names):
        return "flux"
    for key, shape in shapes.items():
        if ("attn2" in key and "to_k" in key and ("lora_down" in key or "lora_A" in key)
                and len(shape) == 2):
            return {768: "sd15", 2048: "sdxl"}.get(shape[1])
    return None
