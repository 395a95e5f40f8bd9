"""Route helpers of the client API: one handler under every client prefix."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.shell import Handler

CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


def client_routes(method: str, path: str, handler: Handler) -> list[web.RouteDef]:
    """The same handler under the v3 and legacy r0 prefixes of the client API."""
    return [web.route(method, prefix + path, handler) for prefix in CLIENT_PREFIXES]
