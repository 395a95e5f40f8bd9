"""Token-bucket rate limiting per (action, key), key being a user id or an IP.

In memory and per process: a bucket refills at ``per_second`` up to
``burst_count``. Buckets that are full again are dropped so memory stays bounded
by the number of recently active keys.

Several processes (workers over one PostgreSQL) do not share buckets: sharing
would put a database write in front of every limited request. Instead each
process gets ``1/processes`` of every limit (``processes``: the main process
plus the configured workers), so with requests spread over them the whole
homeserver allows about the configured rate, and never more; a client whose
requests all reach one process gets that process's share.

Actions: ``login_address`` (per IP), ``login_account`` (successful logins per
account), ``login_failed`` (failed passwords per account), ``registration``
(per IP), ``message`` (per user), ``invites`` (invites sent, per user),
``per_ip`` (every unauthenticated limited action per IP), ``threepid_validation``
(validation mail per IP and per address), ``login_token`` (``/login/get_token``
per user). ``check`` takes a
token or refuses; the failed-login bucket is split into ``peek`` (refuse while
empty, take nothing) before the password is checked and ``record`` after it
failed, so only failures count.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from homeserver.config import RateLimit, RateLimitsConfig
from homeserver.errors import limit_exceeded


def share_of(limit: RateLimit, processes: int) -> RateLimit:
    """One process's part of ``limit`` when ``processes`` serve the same homeserver
    (a burst of at least one, so every action stays possible)."""
    if processes <= 1:
        return limit
    return RateLimit(
        per_second=limit.per_second / processes,
        burst_count=max(1, limit.burst_count // processes),
    )


class RateLimiter:
    def __init__(
        self,
        config: RateLimitsConfig,
        clock: Callable[[], float] = time.monotonic,
        processes: int = 1,
    ) -> None:
        self._config = config
        limits: dict[str, RateLimit] = {
            "login_address": config.login.address,
            "login_account": config.login.account,
            "login_failed": config.login.failed_attempts,
            "registration": config.registration,
            "message": config.message,
            "invites": config.invites_per_user,
            "per_ip": config.per_ip,
            "threepid_validation": config.threepid_validation,
            "login_token": config.login_token,
        }
        self._limits = {action: share_of(limit, processes) for action, limit in limits.items()}
        self._clock = clock
        # (action, key) -> (tokens, last refill time)
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}
        self._last_sweep = clock()

    def _tokens(self, action: str, key: str, now: float) -> tuple[RateLimit, float]:
        limit = self._limits[action]
        tokens, last = self._buckets.get((action, key), (float(limit.burst_count), now))
        return limit, min(float(limit.burst_count), tokens + (now - last) * limit.per_second)

    def _refuse_if_empty(self, limit: RateLimit, tokens: float, cost: float = 1.0) -> None:
        if tokens < cost:
            wait = (cost - tokens) / limit.per_second if limit.per_second > 0 else 3600.0
            raise limit_exceeded(max(1, int(wait * 1000)))

    def check(self, action: str, key: str, cost: int = 1) -> None:
        """Take ``cost`` tokens for ``key`` (all or none) or raise 429 M_LIMIT_EXCEEDED
        with retry_after_ms. A batch larger than ``burst_count`` never passes (as in
        Synapse's invites in createRoom)."""
        if not self._config.enabled:
            return
        now = self._clock()
        limit, tokens = self._tokens(action, key, now)
        needed = float(max(cost, 1))
        self._buckets[(action, key)] = (tokens, now)
        self._refuse_if_empty(limit, tokens, needed)
        self._buckets[(action, key)] = (tokens - needed, now)
        self._maybe_sweep(now)

    def peek(self, action: str, key: str) -> None:
        """Raise 429 while ``key`` has no token left; take nothing."""
        if not self._config.enabled:
            return
        limit, tokens = self._tokens(action, key, self._clock())
        self._refuse_if_empty(limit, tokens)

    def record(self, action: str, key: str) -> None:
        """Take one token for ``key`` whatever is left (an attempt that already happened)."""
        if not self._config.enabled:
            return
        now = self._clock()
        _, tokens = self._tokens(action, key, now)
        self._buckets[(action, key)] = (max(0.0, tokens - 1.0), now)
        self._maybe_sweep(now)

    def _maybe_sweep(self, now: float) -> None:
        if now - self._last_sweep > 60:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        self._last_sweep = now
        for bucket_key, (tokens, last) in list(self._buckets.items()):
            limit = self._limits[bucket_key[0]]
            if tokens + (now - last) * limit.per_second >= limit.burst_count:
                del self._buckets[bucket_key]
