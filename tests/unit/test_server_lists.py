"""Server name lists of the config (exact names, "*" patterns, allow and deny), invite
protection, and the invite budget's all-or-nothing cost."""

from __future__ import annotations

import pytest

from homeserver.config import RateLimit, RateLimitsConfig
from homeserver.errors import MatrixError
from homeserver.moderation_config import InviteProtectionConfig
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.invite_protection import InviteProtection
from homeserver.server_lists import ServerNameList, ServerPolicy


def test_patterns_and_case() -> None:
    names = ServerNameList(["evil.example", "*.spam.test"])
    assert names.matches("evil.example") and names.matches("EVIL.example")
    assert names.matches("a.spam.test") and names.matches("a.b.spam.test:8448")
    assert not names.matches("spam.test") and not names.matches("notevil.example")
    assert not ServerNameList([])
    # A port in the entry limits it to that port; IPv6 literals keep their colons.
    ported = ServerNameList(["host.test:8448", "[::1]"])
    assert ported.matches("host.test:8448") and not ported.matches("host.test:443")
    assert ported.matches("[::1]:8448") and ported.matches("[::1]")


def test_allow_and_deny() -> None:
    everyone = ServerPolicy(None, [])
    assert everyone.allows("any.where")
    only = ServerPolicy(["friend.org", "*.friend.org"], ["bad.friend.org"])
    assert only.allows("friend.org") and only.allows("chat.friend.org")
    assert not only.allows("bad.friend.org")  # deny wins
    assert not only.allows("stranger.net")
    assert not ServerPolicy([], []).allows("friend.org")  # an empty allow list: nobody


def test_invite_protection() -> None:
    p = InviteProtection(
        InviteProtectionConfig(blocked_users=["@spam:ok.org"], blocked_servers=["*.bad"])
    )
    assert p.refuses("@spam:ok.org") and p.refuses("@x:very.bad")
    assert not p.refuses("@alice:ok.org")


def test_rate_limiter_cost_is_all_or_nothing() -> None:
    """createRoom charges its whole invite list at once (rate_limits.invites_per_user)."""
    now = [0.0]
    limiter = RateLimiter(
        RateLimitsConfig(invites_per_user=RateLimit(per_second=1.0, burst_count=3)),
        clock=lambda: now[0],
    )
    limiter.check("invites", "@a:x", 2)
    with pytest.raises(MatrixError) as refused:
        limiter.check("invites", "@a:x", 2)  # one token left: nothing is taken
    assert refused.value.errcode == "M_LIMIT_EXCEEDED"
    limiter.check("invites", "@a:x")
    with pytest.raises(MatrixError):
        limiter.check("invites", "@b:x", 4)  # larger than the bucket: never
    now[0] = 2.0
    limiter.check("invites", "@a:x", 2)
