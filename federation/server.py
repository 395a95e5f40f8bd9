"""Inbound federation routes that need no rooms: version, profile query, and the
client listener's ``/.well-known/matrix/server`` (delegation).

Authenticated routes are wrapped with ``federation.auth.authenticated``: the
handler then gets the verified origin and reads the body with
``signed_content``.
"""

from __future__ import annotations

from aiohttp import web

from federation.auth import authenticated
from homeserver.accounts.service import AccountService
from homeserver.errors import invalid_param, missing_param, not_found
from homeserver.http.shell import json_response

SERVER_NAME = "Myelin"
_PROFILE_FIELDS = ("displayname", "avatar_url")


def _version() -> str:
    # Imported here: importlib.metadata (zipfile, csv, email parsing) is ~1 MiB of an idle
    # server's memory, for one rarely asked request.
    from importlib import metadata

    try:
        return metadata.version("myelin")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class FederationApi:
    def __init__(self, server_name: str, accounts: AccountService) -> None:
        self.server_name = server_name
        self.accounts = accounts

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_matrix/federation/v1/version", self.version),
            web.get("/_matrix/federation/v1/query/profile", authenticated(self.query_profile)),
        ]

    async def version(self, request: web.Request) -> web.Response:
        """Server "Server implementation" (unauthenticated, like every implementation's)."""
        return json_response({"server": {"name": SERVER_NAME, "version": _version()}})

    async def query_profile(self, request: web.Request, origin: str) -> web.Response:
        """ "Querying for information": a local user's public profile, or one field of it."""
        user_id = request.query.get("user_id")
        if user_id is None:
            raise missing_param("'user_id' is required")
        if not user_id.startswith("@") or user_id.split(":", 1)[-1] != self.server_name:
            raise invalid_param("User is not local to this server")
        field = request.query.get("field")
        if field is not None and field not in _PROFILE_FIELDS and field != "m.tz":
            raise not_found("Unknown profile field")
        profile = await self.accounts.get_profile(user_id)
        if field is not None:
            profile = {field: profile[field]} if field in profile else {}
        return json_response(profile)


class WellKnownServerApi:
    """``/.well-known/matrix/server`` on the client listener, when delegation is configured."""

    def __init__(self, delegated: str) -> None:
        self.delegated = delegated

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/.well-known/matrix/server", self.get)]

    async def get(self, request: web.Request) -> web.Response:
        resp = json_response({"m.server": self.delegated})
        resp.headers["Cache-Control"] = "max-age=86400"
        return resp
