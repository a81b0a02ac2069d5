"""Per-key token buckets."""

from __future__ import annotations

import time
from collections.abc import Callable

_MAX_KEYS = 100_000


class RateLimiter:
    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError("a rate limit needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}

    def _tokens(self, key: object, now: float) -> float:
        tokens, last = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.rate)

    def wait(self, key: object) -> float:
        """Seconds until ``key`` may proceed (0: now), taking nothing."""
        tokens = self._tokens(key, self.clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.rate

    def allow(self, key: object) -> float:
        """0 when the request may proceed (and it is counted), else the seconds to wait."""
        now = self.clock()
        tokens = self._tokens(key, now)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self._buckets) >= _MAX_KEYS and key not in self._buckets:
            self._forget_full(now)
        self._buckets[key] = (tokens - 1, now)
        return 0.0

    def _forget_full(self, now: float) -> None:
        """Drop the buckets that have refilled (they hold nothing a new one would
        not); if none has, the oldest half: memory stays bounded under a flood."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        if not full:
            by_age = sorted(self._buckets, key=lambda k: self._buckets[k][1])
            full = by_age[: len(by_age) // 2]
        for k in full:
            del self._buckets[k]
