"""Content hashes of model files, computed once and cached by path+size+mtime.

Hashing a 2–7 GB checkpoint takes seconds to minutes; A1111 users expect the
"Model hash" (first 10 hex of sha256) in metadata, and Plans pin weights by
sha256. The cache is a small JSON file under the brushwork home, rewritten
atomically so concurrent processes never see a torn file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

CHUNK = 1 << 20
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".bin", ".pt", ".pth")


def short_hash(sha256: str) -> str:
    """A1111's short model hash: the first 10 hex digits of the sha256."""
    return sha256[:10]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """sha256 of files and folders, remembered across processes."""

    def __init__(self, cache_file: Path) -> None:
        self.cache_file = cache_file
        self._lock = threading.Lock()
        self.computed = 0  # how many files were actually read (tests count this)

    def _read(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.cache_file.read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def _write(self, data: dict[str, dict[str, object]]) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.cache_file.parent, prefix=".hashes.")
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=0, sort_keys=True)
        os.replace(tmp, self.cache_file)

    def file_sha256(self, path: Path) -> str:
        path = path.resolve()
        stat = path.stat()
        key = str(path)
        with self._lock:
            entry = self._read().get(key)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
                return str(entry["sha256"])
            sha = sha256_file(path)
            self.computed += 1
            data = self._read()
            data[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
            self._write(data)
            return sha

    def folder_sha256(self, folder: Path) -> str:
        """A diffusers folder's identity: the hash of its weight files' hashes and configs."""
        digest = hashlib.sha256()
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            rel = path.relative_to(folder).as_posix()
            if path.suffix in WEIGHT_SUFFIXES:
                digest.update(f"{rel}:{self.file_sha256(path)}\n".encode())
            elif path.suffix in (".json", ".txt"):
                digest.update(f"{rel}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        return digest.hexdigest()

    def sha256(self, path: Path) -> str:
        return self.folder_sha256(path) if path.is_dir() else self.file_sha256(path)
