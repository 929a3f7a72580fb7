"""Server results, content-addressed: an image's key is the cache key of its single-image Plan.

The same Plan (model hash, prompt, seed, every parameter) always maps to the
same key, so an identical request is answered from here without GPU work.
Keys are made by brushwork, never taken from a request, and files are written
atomically (temp file + rename), so a half-written image is never served.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

KEY_PATTERN = re.compile(r"^[0-9a-f]{64}\.png$")


def image_key(single_plan_cache_key: str) -> str:
    return f"{single_plan_cache_key}.png"


def is_key(key: str) -> bool:
    return bool(KEY_PATTERN.fullmatch(key))


class ResultStore:
    """A local folder of result PNGs, one file per key (two-level fan-out)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, key: str) -> Path:
        if not is_key(key):
            raise ValueError(f"not a result key: {key!r}")
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        return is_key(key) and self.path(key).is_file()

    def put(self, key: str, data: bytes) -> str:
        target = self.path(key)
        if target.is_file():
            return key
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".png")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return key

    def read(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def url(self, key: str, expires: int | None = None) -> str | None:
        """A local folder has no URLs of its own: the API serves the bytes."""
        return None

    def delete(self, key: str) -> None:
        if is_key(key):
            self.path(key).unlink(missing_ok=True)
