"""Local paths out of HTTP answers: engine messages name files on the server, clients need only their names.

`redact(text, settings)` rewrites every absolute path: one under a configured
folder keeps its place in that folder (`<models>/checkpoints/x.safetensors`),
any other keeps only its file name (`…/x.py`). It is applied where text leaves
the server (error handlers, job views, event streams); the job store and the
logs keep the full text, which operators need.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from brushwork.config import Settings

ELSEWHERE = "…"

_STOP = r"""\s'"`<>|*?,;()\[\]{}"""  # characters that end a bare path
# A path in quotes may hold spaces: it ends at its quote.
_QUOTED = re.compile(r"""(?P<q>['"`])(?P<path>(?:file://)?(?:/|[A-Za-z]:[\\/]|\\\\)[^'"`\n]*)(?P=q)""")
# A bare path starts at a word boundary: not inside a URL, a relative path, a word such as "and/or",
# or a placeholder already written (`<models>/...`, `…/...`).
_BARE = re.compile(
    rf"(?<![\w.:/\\~>…-])(?:file://)?(?:[A-Za-z]:[\\/]|\\\\(?=[^\\{_STOP}])|/(?=[^/{_STOP}]))[^{_STOP}]*"
)


def folders(settings: Settings) -> list[tuple[str, str]]:
    """(absolute folder, placeholder) pairs for brushwork's own folders, the most specific first."""
    named = [
        (settings.results_dir, "<results>"),
        (settings.assets_dir, "<assets>"),
        (settings.resolved_models_dir, "<models>"),
        (settings.resolved_styles_dir, "<styles>"),
        (settings.output_dir, "<outputs>"),
        (settings.hf_cache, "<hf-cache>"),
        (settings.home, "<home>"),
    ]
    pairs: dict[str, str] = {}
    for folder, name in named:
        if folder is None:
            continue
        absolute = os.path.abspath(folder)
        for form in (absolute, os.path.realpath(absolute)):  # messages may name either form
            pairs.setdefault(form.rstrip("/\\") or form, name)
    return sorted(pairs.items(), key=lambda pair: len(pair[0]), reverse=True)


def _placeholder(path: str, known: Sequence[tuple[str, str]]) -> str:
    bare = path.removeprefix("file://")
    for folder, name in known:
        if bare == folder or bare.startswith((folder + "/", folder + "\\")):
            return name + bare[len(folder):]
    parts = [part for part in re.split(r"[\\/]+", bare) if part]
    if not parts or re.fullmatch(r"[A-Za-z]:", parts[-1]):
        return ELSEWHERE
    return f"{ELSEWHERE}/{parts[-1]}{'/' if bare.endswith(('/', chr(92))) else ''}"


def redact(text: str, settings: Settings | None = None) -> str:
    """`text` with every absolute filesystem path replaced by a placeholder that keeps the file name."""
    if not text:
        return text
    known = folders(settings) if settings is not None else []
    text = _QUOTED.sub(lambda m: m["q"] + _placeholder(m["path"], known) + m["q"], text)
    return _BARE.sub(lambda m: _placeholder(m[0], known), text)


def redact_optional(text: str | None, settings: Settings | None = None) -> str | None:
    """`redact` for a field that may be empty (a job's error)."""
    return redact(text, settings) if text else text
