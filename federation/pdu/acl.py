"""Server ACLs (client-server "Server Access Control Lists", server-server "Server ACLs").

Pure: whether ``server_name`` may take part in a room, given the content of
its ``m.room.server_acl`` event.
"""

from __future__ import annotations

import re
from typing import Any

from homeserver.errors import MatrixError, forbidden


def _glob(pattern: str) -> re.Pattern[str]:
    out = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile(out + r"\Z", re.DOTALL)


def _host(server_name: str) -> str:
    """The server name without its port (ACLs match hostnames)."""
    if server_name.startswith("["):
        return server_name[: server_name.find("]") + 1]
    host, sep, port = server_name.rpartition(":")
    return host if sep and port.isdigit() else server_name


def _is_ip_literal(host: str) -> bool:
    if host.startswith("["):
        return True
    parts = host.split(".")
    return len(parts) == 4 and all(p.isdigit() for p in parts)


def server_allowed(acl: dict[str, Any] | None, server_name: str) -> bool:
    """The spec's order: IP literals (when not allowed), deny, then allow."""
    if acl is None:
        return True
    host = _host(server_name).lower()
    if acl.get("allow_ip_literals", True) is False and _is_ip_literal(host):
        return False
    deny = acl.get("deny", [])
    allow = acl.get("allow", [])
    if isinstance(deny, list) and any(isinstance(p, str) and _glob(p).match(host) for p in deny):
        return False
    if not isinstance(allow, list):
        return False
    return any(isinstance(p, str) and _glob(p).match(host) for p in allow)


def denied() -> MatrixError:
    return forbidden("Server is denied by the room's ACL")
