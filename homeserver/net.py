"""Facts about a client connection that several layers need."""

from __future__ import annotations

from aiohttp import web


def client_ip(request: web.Request) -> str:
    """The client address; X-Forwarded-For is honoured only from a loopback proxy."""
    peer = request.remote or "-"
    fwd = request.headers.get("X-Forwarded-For")
    if fwd and peer in ("127.0.0.1", "::1"):
        return fwd.split(",")[0].strip()
    return peer
