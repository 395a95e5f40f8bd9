"""Rate limits with several processes: each process enforces its share of every limit,
so together they allow about the configured rate and never more."""

from __future__ import annotations

import pytest

from homeserver.config import RateLimit, RateLimitsConfig
from homeserver.errors import MatrixError
from homeserver.ratelimit import RateLimiter, share_of


def test_each_process_gets_its_share() -> None:
    assert share_of(RateLimit(per_second=3.0, burst_count=9), 3) == RateLimit(1.0, 3)
    assert share_of(RateLimit(per_second=1.0, burst_count=2), 3).burst_count == 1
    assert share_of(RateLimit(per_second=1.0, burst_count=10), 1) == RateLimit(1.0, 10)


def test_three_processes_together_allow_the_configured_burst() -> None:
    config = RateLimitsConfig(registration=RateLimit(per_second=0.001, burst_count=6))
    now = [1000.0]
    limiters = [RateLimiter(config, clock=lambda: now[0], processes=3) for _ in range(3)]
    allowed = 0
    for i in range(12):  # round robin, as a proxy spreading requests would
        try:
            limiters[i % 3].check("registration", "10.0.0.1")
            allowed += 1
        except MatrixError as e:
            assert e.errcode == "M_LIMIT_EXCEEDED"
    assert allowed == 6
    with pytest.raises(MatrixError):
        limiters[0].check("registration", "10.0.0.1")
