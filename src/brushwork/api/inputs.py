"""Request bodies → GenerationRequest: images given inline (base64 or data: URLs) go to the asset store.

The same field names and the same validation as the CLI and the Python API;
images are checked (bytes, pixels, format) before anything else is done.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from brushwork.errors import InvalidRequest
from brushwork.facade import IMAGE_FIELDS, Brushwork
from brushwork.plan import GenerationRequest


def decode_image(field: str, value: Any) -> bytes:
    """base64 text, optionally as a `data:image/...;base64,` URL → bytes (checked later by the asset store)."""
    if not isinstance(value, str):
        raise InvalidRequest(field, "expected a base64-encoded image (or a data: URL)")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(field, "is not valid base64") from None


def request_from_body(body: Any, api: Brushwork) -> GenerationRequest:
    """Build a GenerationRequest from a JSON body; inline images are stored and replaced by AssetRefs."""
    if not isinstance(body, dict):
        raise InvalidRequest("request", "the body must be a JSON object")
    data = dict(body)
    for name in IMAGE_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], dict):
            data[name] = api.add_image(decode_image(name, data[name]), name)
    controls = data.get("controls")
    if isinstance(controls, list):
        units = []
        for index, unit in enumerate(controls):
            if isinstance(unit, dict) and isinstance(unit.get("image"), str):
                unit = {**unit, "image": api.add_image(decode_image(f"control #{index + 1} image", unit["image"]),
                                                       "control")}
            units.append(unit)
        data["controls"] = units
    return GenerationRequest.parse(data)
