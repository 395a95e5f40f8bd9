"""A room's event lifetime: its m.room.retention within the server's bounds, or the default."""

from __future__ import annotations

import pytest

from homeserver.config import ConfigError, RetentionConfig, RetentionPolicy, parse_config
from homeserver.rooms.retention import max_lifetime


def test_room_policy_is_clamped_and_default_applies() -> None:
    cfg = RetentionConfig(
        enabled=True,
        default_policy=RetentionPolicy(max_lifetime=5000),
        allowed_lifetime_min=1000,
        allowed_lifetime_max=9000,
    )
    assert max_lifetime(cfg, None) == 5000
    assert max_lifetime(cfg, {}) == 5000
    assert max_lifetime(cfg, {"max_lifetime": 2000}) == 2000
    assert max_lifetime(cfg, {"max_lifetime": 10}) == 1000
    assert max_lifetime(cfg, {"max_lifetime": 10**9}) == 9000
    for junk in ("2000", True, 0, -5, 1.5, None):
        assert max_lifetime(cfg, {"max_lifetime": junk}) == 5000
    assert max_lifetime(RetentionConfig(enabled=True), {}) is None
    assert max_lifetime(RetentionConfig(enabled=True), {"max_lifetime": 7}) == 7


@pytest.mark.parametrize(
    "retention",
    [
        {"default_policy": {"max_lifetime": 0}},
        {"allowed_lifetime_min": 10, "allowed_lifetime_max": 5},
        {"purge_interval_ms": 0},
        {"default_policy": {"max_lifetime": "7d"}},
        {"purge_jobs": []},
    ],
)
def test_bad_retention_config_is_refused(retention: dict[str, object], tmp_path: object) -> None:
    with pytest.raises(ConfigError):
        parse_config({"server_name": "example.org", "retention": retention}, tmp_path)  # type: ignore[arg-type]
