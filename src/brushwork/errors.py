"""Error types shared by every front door.

Front doors map these to exit codes / HTTP statuses: `InvalidRequest` and
`NotFound` are the user's to fix (exit 2, HTTP 4xx); everything else derived
from `BrushworkError` is a runtime failure (exit 1, HTTP 5xx).
"""

from __future__ import annotations

from collections.abc import Iterable


class BrushworkError(Exception):
    """Base class: a failure with a message meant for a person."""


class InvalidRequest(BrushworkError):
    """A field of a request has a value outside what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(InvalidRequest):
    """A named thing (style, type, sampler, model...) does not exist; lists what does."""

    def __init__(self, field: str, value: str, valid: Iterable[str], what: str | None = None) -> None:
        names = sorted(set(valid))
        shown = ", ".join(names) if names else "(none available)"
        super().__init__(field, f"unknown {what or field} {value!r}; valid: {shown}")
        self.value = value
        self.valid = names


class ModelUnavailable(BrushworkError):
    """A model is known by name but its files are not where they should be."""


class Cancelled(BrushworkError):
    """Generation was cancelled between steps by the caller."""
