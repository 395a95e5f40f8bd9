"""Token-bucket rate limiting per (action, key), key being a user id or an IP.

In memory and per process: a bucket refills at ``per_second`` up to
``burst``. Buckets that are full again are dropped so memory stays bounded
by the number of recently active keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from homeserver.config import RateLimit, RateLimitsConfig
from homeserver.errors import limit_exceeded


class RateLimiter:
    def __init__(
        self, config: RateLimitsConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        # (action, key) -> (tokens, last refill time)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._last_sweep = clock()

    def check(self, action: str, key: str) -> None:
        """Take one token for ``key`` or raise 429 M_LIMIT_EXCEEDED with retry_after_ms."""
        if not self._config.enabled:
            return
        limit: RateLimit = getattr(self._config, action)
        now = self._clock()
        tokens, last = self._buckets.get((action, key), (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - last) * limit.per_second)
        if tokens < 1.0:
            wait = (1.0 - tokens) / limit.per_second if limit.per_second > 0 else 3600.0
            self._buckets[(action, key)] = (tokens, now)
            raise limit_exceeded(max(1, int(wait * 1000)))
        self._buckets[(action, key)] = (tokens - 1.0, now)
        if now - self._last_sweep > 60:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for bucket_key, (tokens, last) in list(self._buckets.items()):
            limit: RateLimit = getattr(self._config, bucket_key[0])
            if tokens + (now - last) * limit.per_second >= limit.burst:
                del self._buckets[bucket_key]
