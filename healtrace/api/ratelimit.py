"""In-process token buckets for publishable (website) keys: one per key, one per end user.

A bucket holds up to ``per_min`` tokens and refills at ``per_min`` a minute, so a visitor
may send a short burst and then one message every ``60 / per_min`` seconds. The buckets
live in this process only; with several workers each enforces its own share (a shared
store such as Redis would make them exact).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from healtrace.config import Settings
from healtrace.errors import HealTraceError

#: Buckets kept before full (idle) ones are dropped, so anonymous ids cannot grow memory.
MAX_BUCKETS = 50_000


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    """Buckets of ``per_min`` tokens refilled continuously, keyed by any string."""

    def __init__(self, per_min: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_min = per_min
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def _refilled(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_BUCKETS:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(float(self.per_min), now)
            return bucket
        bucket.tokens = min(
            float(self.per_min), bucket.tokens + (now - bucket.at) * self.per_min / 60.0
        )
        bucket.at = now
        return bucket

    def _prune(self, now: float) -> None:
        for key in [k for k, b in self._buckets.items() if self._full(b, now)]:
            del self._buckets[key]

    def _full(self, bucket: _Bucket, now: float) -> bool:
        return bucket.tokens + (now - bucket.at) * self.per_min / 60.0 >= self.per_min

    def wait_s(self, key: str) -> float:
        """Seconds until ``key`` has a token (0: it has one now)."""
        if self.per_min <= 0:
            return 0.0
        bucket = self._refilled(key, self.clock())
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * 60.0 / self.per_min

    def take(self, key: str) -> None:
        if self.per_min > 0:
            self._refilled(key, self.clock()).tokens -= 1


class RateLimiter:
    """The per-key and per-end-user limits (``HEALTRACE_RATE_LIMIT_PER_*_PER_MIN``)."""

    def __init__(
        self, per_key_per_min: int, per_user_per_min: int, *, clock: Callable[[], float] | None
    ) -> None:
        tick = clock or time.monotonic
        self.keys = TokenBuckets(per_key_per_min, clock=tick)
        self.users = TokenBuckets(per_user_per_min, clock=tick)

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] | None = None
    ) -> RateLimiter:
        return cls(
            settings.rate_limit_per_key_per_min, settings.rate_limit_per_user_per_min, clock=clock
        )

    def check(self, key_id: str, end_user: str | None) -> int:
        """Spend one token of the key's bucket and of the end user's; returns 0 if allowed,
        else the whole seconds to wait (nothing is spent then)."""
        user = f"{key_id}:{end_user}" if end_user else None
        wait = max(self.keys.wait_s(key_id), self.users.wait_s(user) if user else 0.0)
        if wait > 0:
            return max(1, math.ceil(wait))
        self.keys.take(key_id)
        if user:
            self.users.take(user)
        return 0


def limiter_of(app: Any) -> RateLimiter:
    """The app's limiter, made on first use from its settings (tests may set their own as
    ``app.state.rate_limiter`` before serving)."""
    limiter: RateLimiter | None = getattr(app.state, "rate_limiter", None)
    if limiter is None:
        limiter = RateLimiter.from_settings(app.state.services.settings)
        app.state.rate_limiter = limiter
    return limiter


class RateLimited(HealTraceError):
    """A key or end user went over its rate limit; ``retry_after`` says when to try again."""

    code = "rate_limited"
