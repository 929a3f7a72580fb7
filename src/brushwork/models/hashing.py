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


def sha256_file(path: Path, skip_safetensors_header: bool = False) -> str:
    """sha256 of a file; optionally of a safetensors file's tensor data only (A1111's LoRA hash)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        if skip_safetensors_header:
            header_size = int.from_bytes(fh.read(8), "little")
            fh.seek(8 + header_size)
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def lora_short_hash(addnet_sha256: str) -> str:
    """A1111's 'Lora hashes' value: the first 12 hex of the hash of the tensor data."""
    return addnet_sha256[:12]


def _is_variant(path: Path) -> bool:
    """`diffusion_pytorch_model.fp16.safetensors` is a variant; the plain name is what loads."""
    return len(path.name.split(".")) > 2


def loaded_files(folder: Path) -> list[Path]:
    """The files diffusers loads from a pipeline/model folder: configs and non-variant weights.

    An HF snapshot may also hold fp16 variants or a 7 GB all-in-one file at its
    root; hashing those would cost minutes and say nothing about what runs.
    """
    index = folder / "model_index.json"
    files: list[Path] = []
    dirs = [folder]
    if index.is_file():
        components = json.loads(index.read_text())
        dirs = [folder / name for name, value in components.items()
                if not name.startswith("_") and isinstance(value, list) and value and value[0] is not None
                and (folder / name).is_dir()]
        files.append(index)
    for directory in dirs:
        entries = [p for p in directory.iterdir() if p.is_file()]
        weights = [p for p in entries if p.suffix in WEIGHT_SUFFIXES and not _is_variant(p)]
        if any(p.suffix == ".safetensors" for p in weights):
            weights = [p for p in weights if p.suffix == ".safetensors"]
        files += [p for p in entries if p.suffix in (".json", ".txt")] + weights
    return sorted(files)


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

    def file_sha256(self, path: Path, *, addnet: bool = False) -> str:
        """sha256 of the file (or, with `addnet`, of its safetensors tensor data)."""
        path = path.resolve()
        stat = path.stat()
        key = f"addnet:{path}" if addnet else str(path)
        with self._lock:
            entry = self._read().get(key)
            if entry and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
                return str(entry["sha256"])
            sha = sha256_file(path, skip_safetensors_header=addnet)
            self.computed += 1
            data = self._read()
            data[key] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha}
            self._write(data)
            return sha

    def folder_sha256(self, folder: Path) -> str:
        """A diffusers folder's identity: the hashes of the weight files and configs that load."""
        digest = hashlib.sha256()
        for path in loaded_files(folder):
            rel = path.relative_to(folder).as_posix()
            if path.suffix in WEIGHT_SUFFIXES:
                digest.update(f"{rel}:{self.file_sha256(path)}\n".encode())
            elif path.suffix in (".json", ".txt"):
                digest.update(f"{rel}:{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
        return digest.hexdigest()

    def sha256(self, path: Path) -> str:
        return self.folder_sha256(path) if path.is_dir() else self.file_sha256(path)
