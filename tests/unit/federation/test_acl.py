"""The m.room.server_acl matcher (server-server "Server Access Control Lists")."""

from __future__ import annotations

from typing import Any

import pytest

from federation.pdu.acl import server_allowed


@pytest.mark.parametrize(
    ("acl", "server", "allowed"),
    [
        # No ACL event: everyone.
        (None, "evil.example", True),
        # allow defaults to [] : nobody.
        ({}, "good.example", False),
        ({"deny": []}, "good.example", False),
        ({"allow": ["*"]}, "good.example", True),
        # Ports are not part of the match.
        ({"allow": ["good.example"]}, "good.example:8448", True),
        ({"allow": ["good.example:8448"]}, "good.example:8448", False),
        # deny wins over allow.
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example", False),
        ({"allow": ["*"], "deny": ["evil.example"]}, "evil.example:443", False),
        ({"allow": ["*"], "deny": ["evil.example"]}, "notevil.example", True),
        # Globs: * any run (also empty and across dots), ? exactly one character.
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "a.b.evil.example", False),
        ({"allow": ["*"], "deny": ["*.evil.example"]}, "evil.example", True),
        ({"allow": ["*.example"]}, "x.example", True),
        ({"allow": ["*.example"]}, "x.example.org", False),
        ({"allow": ["server?.example"]}, "server1.example", True),
        ({"allow": ["server?.example"]}, "server12.example", False),
        ({"allow": ["server?.example"]}, "server.example", False),
        # Regex metacharacters are literal.
        ({"allow": ["a.example"]}, "aXexample", False),
        ({"allow": ["(a|b).example"]}, "a.example", False),
        ({"allow": ["(a|b).example"]}, "(a|b).example", True),
        # Case-insensitive.
        ({"allow": ["Good.Example"]}, "good.EXAMPLE", True),
        # IP literals: allowed by default, refused with allow_ip_literals false,
        # even when an allow rule would match them.
        ({"allow": ["*"]}, "127.0.0.1:8448", True),
        ({"allow": ["*"], "allow_ip_literals": False}, "127.0.0.1:8448", False),
        ({"allow": ["127.0.0.1"], "allow_ip_literals": False}, "127.0.0.1", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "[::1]:8448", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "[2001:db8::1]", False),
        ({"allow": ["*"], "allow_ip_literals": False}, "host.example:8448", True),
        ({"allow": ["*"], "allow_ip_literals": True}, "[::1]", True),
        ({"allow": ["[::1]"]}, "[::1]:8448", True),
        ({"allow": ["*"], "deny": ["127.0.0.*"]}, "127.0.0.1:9000", False),
        # Malformed entries are ignored rather than matched.
        ({"allow": ["*"], "deny": [1, None]}, "good.example", True),
        ({"allow": [1, "good.example"]}, "good.example", True),
        ({"allow": "*"}, "good.example", False),
    ],
)
def test_server_allowed(acl: dict[str, Any] | None, server: str, allowed: bool) -> None:
    assert server_allowed(acl, server) is allowed
