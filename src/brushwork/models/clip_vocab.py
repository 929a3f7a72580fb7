"""Derive the Hugging Face CLIP tokenizer files (`vocab.json`, `merges.txt`) offline.

Single-file checkpoints carry no tokenizer, and diffusers' `from_single_file`
wants a `tokenizer/` folder it can hand to `CLIPTokenizer.from_pretrained`.
We cannot download `openai/clip-vit-large-patch14`, but the open-clip-torch
wheel ships the very BPE table CLIP was trained with
(`open_clip/bpe_simple_vocab_16e6.txt.gz`). OpenAI's `SimpleTokenizer`
builds its vocabulary from that table deterministically; we replay that
construction and write it in the layout `CLIPTokenizer` reads. SD 1.5's
CLIP-L tokenizer and SDXL's OpenCLIP bigG tokenizer share this vocabulary
(they differ only in the pad token, which lives in `tokenizer_config.json`).

No torch / open_clip import happens here: `open_clip/__init__.py` pulls in
torch and timm, so we locate the data file without importing the package.
"""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from functools import lru_cache
from importlib.util import find_spec
from pathlib import Path

__all__ = [
    "CLIP_VOCAB_SIZE",
    "bpe_file_path",
    "build_clip_vocab_and_merges",
    "write_clip_tokenizer_files",
]

CLIP_VOCAB_SIZE = 49408
"""256 byte tokens + 256 end-of-word byte tokens + 48894 merges + 2 specials."""

_BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
_NUM_MERGES = 49152 - 256 - 2  # what SimpleTokenizer keeps: lines [1 : 49152-256-2+1]
_MERGES_HEADER = "#version: 0.2"
_BOS = "<|startoftext|>"
_EOS = "<|endoftext|>"


def bpe_file_path() -> Path:
    """Locate the BPE table inside the installed open-clip-torch, without importing it.

    `find_spec` reads the package location from the import system's metadata,
    so torch/timm are not loaded just to find a data file.
    """
    spec = find_spec("open_clip")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _BPE_NAME
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"could not find open_clip/{_BPE_NAME}; the CLIP tokenizer is derived from it. "
        "Install open-clip-torch (it is a brushwork dependency)."
    )


def _bytes_to_unicode() -> dict[int, str]:
    """OpenAI CLIP's reversible byte -> printable-unicode table (same order, which fixes token ids)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(2**8):
        if b not in bs:
            bs.append(b)
            cs.append(2**8 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


@lru_cache(maxsize=1)
def build_clip_vocab_and_merges() -> tuple[dict[str, int], tuple[str, ...]]:
    """Return (vocab, merge lines) exactly as OpenAI CLIP's SimpleTokenizer builds them.

    Cached because the same table serves every tokenizer folder we write.
    """
    raw = gzip.decompress(bpe_file_path().read_bytes()).decode("utf-8").split("\n")
    merge_lines = tuple(raw[1 : _NUM_MERGES + 1])  # line 0 is the table's own version header
    if len(merge_lines) != _NUM_MERGES:
        raise ValueError(f"BPE table is too short: {len(merge_lines)} merges, expected {_NUM_MERGES}")

    byte_tokens = list(_bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens]
    tokens.extend("".join(line.split()) for line in merge_lines)
    tokens.extend([_BOS, _EOS])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"derived CLIP vocabulary has {len(vocab)} tokens, expected {CLIP_VOCAB_SIZE}")
    return vocab, merge_lines


@lru_cache(maxsize=1)
def _render() -> tuple[bytes, bytes]:
    vocab, merges = build_clip_vocab_and_merges()
    vocab_bytes = json.dumps(vocab, ensure_ascii=False).encode("utf-8")
    merges_bytes = ("\n".join((_MERGES_HEADER, *merges)) + "\n").encode("utf-8")
    return vocab_bytes, merges_bytes


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + rename, so readers never see a partial file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_clip_tokenizer_files(dest: Path) -> None:
    """Write `vocab.json` and `merges.txt` into `dest` (created if needed).

    Idempotent: files that already hold the exact bytes are left untouched,
    so concurrent callers and repeated calls are cheap and safe.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    vocab_bytes, merges_bytes = _render()
    for name, data in (("vocab.json", vocab_bytes), ("merges.txt", merges_bytes)):
        target = dest / name
        try:
            if target.stat().st_size == len(data) and target.read_bytes() == data:
                continue
        except FileNotFoundError:
            pass
        _atomic_write(target, data)
