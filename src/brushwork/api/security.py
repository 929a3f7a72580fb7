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


class RateLimiter:
    """At most `per_minute` new jobs per caller (API key, else client address): a token bucket each."""

    def __init__(self, per_minute: float, clock: Callable[[], float] | None = None) -> None:
        import time

        self.rate = per_minute / 60.0
        self.capacity = max(1.0, per_minute)
        self.clock = clock or time.monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # caller → (tokens, last refill)

    def __call__(self, request: Request) -> None:
        if self.rate <= 0:
            return
        import hashlib

        auth = request.headers.get("authorization", "")
        who = "key:" + hashlib.sha256(auth.encode()).hexdigest() if auth else f"ip:{request.client.host if request.client else '-'}"
        now = self.clock()
        tokens, last = self._buckets.get(who, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens < 1:
            retry = max(1, int((1 - tokens) / self.rate) + 1)
            raise HTTPException(status_code=429, detail=f"rate limit: {self.capacity:g} jobs per minute",
                                headers={"Retry-After": str(retry)})
        self._buckets[who] = (tokens - 1, now)
