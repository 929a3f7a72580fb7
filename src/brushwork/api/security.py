"""Optional API keys: `Authorization: Bearer KEY`, compared in constant time, never logged."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence

from fastapi import HTTPException, Request


def require_key(keys: Sequence[str]) -> Callable[[Request], None]:
    """A dependency that refuses requests without one of `keys` (no keys configured: everyone may call)."""
    encoded = [key.encode() for key in keys if key]

    def check(request: Request) -> None:
        if not encoded:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        candidate = given.strip().encode()
        ok = False
        for key in encoded:  # no early exit: the time taken does not tell which key nearly matched
            ok |= hmac.compare_digest(candidate, key)
        if scheme.lower() != "bearer" or not ok:
            raise HTTPException(status_code=401, detail="missing or wrong API key (Authorization: Bearer KEY)",
                                headers={"WWW-Authenticate": "Bearer"})

    return check
