"""What every admin handler needs: the admin check and strict query parameters."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.requester import Requester
from homeserver.errors import forbidden, invalid_param

ADMIN_V1 = "/_synapse/admin/v1"
ADMIN_V2 = "/_synapse/admin/v2"


async def require_admin(auth: Authenticator, request: web.Request) -> Requester:
    """The requester if a server admin; 401 without a valid token, 403 otherwise."""
    requester = await auth.requester(request)
    if not requester.is_admin:
        raise forbidden("You are not a server admin")
    return requester


def query_count(request: web.Request, key: str, default: int, maximum: int | None = None) -> int:
    """A non-negative integer query parameter (``from``, ``limit``), capped at ``maximum``."""
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or len(raw) > 18:
        raise invalid_param(f"Query parameter {key!r} must be a non-negative integer")
    value = int(raw)
    return value if maximum is None else min(value, maximum)


def query_flag(request: web.Request, key: str, default: bool | None) -> bool | None:
    """A boolean query parameter: ``true`` or ``false``."""
    raw = request.query.get(key)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise invalid_param(f"Query parameter {key!r} must be true or false")
    return raw == "true"


def query_dir(request: web.Request, default: str = "f") -> bool:
    """``dir``: ``f`` (forwards) or ``b``; True when backwards."""
    raw = request.query.get("dir", default)
    if raw not in ("f", "b"):
        raise invalid_param("Query parameter 'dir' must be 'f' or 'b'")
    return raw == "b"


def query_text(request: web.Request, key: str) -> str | None:
    raw = request.query.get(key)
    if raw is not None and "\x00" in raw:
        raise invalid_param(f"Query parameter {key!r} must not contain NUL")
    return raw
