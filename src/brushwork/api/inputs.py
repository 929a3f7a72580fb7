"""Request bodies → GenerationRequest: images given inline (base64 or data: URLs) go to the asset store.

An http(s) URL is fetched (SSRF-guarded, `remote_images`) only when `server.allow_image_urls` is on.

The same field names and the same validation as the CLI and the Python API;
images are checked (bytes, pixels, format) before anything else is done.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from fastapi import HTTPException

from brushwork.api import remote_images
from brushwork.config import Settings
from brushwork.errors import InvalidRequest, NotFound
from brushwork.facade import IMAGE_FIELDS, Brushwork
from brushwork.plan import GenerationRequest


def decode_image(field: str, value: Any) -> bytes:
    """An uploaded file's bytes, or base64 text (optionally a `data:image/...;base64,` URL) → bytes.

    The bytes are checked by the asset store (size, pixels, format) before anything else.
    """
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise InvalidRequest(field, "expected a base64-encoded image (or a data: URL)")
    text = value.split(",", 1)[1] if value.startswith("data:") and "," in value else value
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(field, "is not valid base64") from None


URL_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")  # base64 never holds ':', data: URLs have no '//'
URLS_OFF = ("image URLs are turned off on this server (server.allow_image_urls); send the image as base64 "
            "or multipart")


def image_bytes(field: str, value: Any, settings: Settings) -> bytes:
    """An image value's bytes: an upload, base64 / a data: URL, or an http(s) URL when the server allows them."""
    match = URL_SCHEME.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        return decode_image(field, value)
    if match.group(1).lower() not in ("http", "https"):
        raise InvalidRequest(field, f"{match.group(1)}:// URLs are not accepted; send the image as base64 (or a "
                                    "data: URL) or multipart")
    if not settings.server.allow_image_urls:
        raise InvalidRequest(field, URLS_OFF)
    return remote_images.fetch_image(value, field, limits=settings.limits, timeout=settings.server.image_url_timeout)


def request_from_body(body: Any, api: Brushwork) -> GenerationRequest:
    """Build a GenerationRequest from a JSON body; inline images are stored and replaced by AssetRefs."""
    if not isinstance(body, dict):
        raise InvalidRequest("request", "the body must be a JSON object")
    data = dict(body)
    for name in IMAGE_FIELDS:
        if data.get(name) is not None and not isinstance(data[name], dict):  # a dict would be an AssetRef
            data[name] = api.add_image(image_bytes(name, data[name], api.settings), name)
    controls = data.get("controls")
    if isinstance(controls, list):
        units = []
        for index, unit in enumerate(controls):
            if isinstance(unit, dict) and isinstance(unit.get("image"), (str, bytes)):
                field = f"control #{index + 1} image"
                unit = {**unit, "image": api.add_image(image_bytes(field, unit["image"], api.settings), field)}
            units.append(unit)
        data["controls"] = units
    return GenerationRequest.parse(data)


MULTIPART_FILES = ("init_image", "mask_image")
MAX_CONTROL_FILES = 8


async def read_body(request: Any) -> Any:
    """The request as a dict: a JSON body, or multipart with a `request` JSON field plus image files
    (`init_image`, `mask_image`, `control_image_1`...`control_image_8` for `controls[0..7].image`)."""
    import json

    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/json", "multipart/form-data") and not content_type.endswith("+json"):
        # not a "simple" form post: a web page cannot queue jobs on a local server behind CORS's back
        raise HTTPException(status_code=415, detail="send application/json or multipart/form-data")
    if content_type != "multipart/form-data":
        try:
            return await request.json()
        except (ValueError, UnicodeDecodeError):
            raise InvalidRequest("body", "is not valid JSON") from None
        except RecursionError:
            raise InvalidRequest("body", "is nested too deeply") from None
    try:
        form = await request.form(max_files=len(MULTIPART_FILES) + MAX_CONTROL_FILES, max_fields=16)
    except Exception as exc:  # noqa: BLE001 — the multipart parser's own errors: malformed input
        raise InvalidRequest("body", f"is not valid multipart/form-data ({exc})") from None
    text = form.get("request")
    try:
        data = json.loads(text) if isinstance(text, str) and text.strip() else {}
    except (ValueError, RecursionError):
        raise InvalidRequest("request", "the form field must hold the GenerationRequest as JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("request", "the form field must hold a JSON object")
    for name in MULTIPART_FILES:
        upload = form.get(name)
        if upload is not None and not isinstance(upload, str):
            data[name] = await upload.read()
    controls = data.get("controls")
    for index in range(MAX_CONTROL_FILES):
        upload = form.get(f"control_image_{index + 1}")
        if upload is None or isinstance(upload, str):
            continue
        if not isinstance(controls, list) or index >= len(controls) or not isinstance(controls[index], dict):
            raise InvalidRequest(f"control_image_{index + 1}", f"there is no controls[{index}] in the request for it")
        controls[index]["image"] = await upload.read()
    unknown = set(form.keys()) - {"request", *MULTIPART_FILES, *(f"control_image_{i + 1}" for i in range(MAX_CONTROL_FILES))}
    if unknown:
        raise InvalidRequest(min(unknown), "unknown form field; expected request, init_image, mask_image, "
                                                 "control_image_N")
    return data


def refuse_model_paths(request: GenerationRequest, api: Brushwork) -> None:
    """Over HTTP a model is a catalog name only: a path would let callers probe or load the server's files."""
    if request.model is None:
        return
    names = api.catalog.checkpoints()
    if request.model not in names:
        raise NotFound("model", request.model, names)
