"""Client API: /versions, /.well-known/matrix/client, /capabilities (spec: "Capabilities")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.config import Config, public_client_url
from homeserver.errors import not_found
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.shell import json_response

SPEC_VERSIONS = [
    "r0.6.1",
    "v1.1",
    "v1.2",
    "v1.3",
    "v1.4",
    "v1.5",
    "v1.6",
    "v1.7",
    "v1.8",
    "v1.9",
    "v1.10",
    "v1.11",
    "v1.12",
]


class DiscoveryApi:
    def __init__(
        self, config: Config, auth: Authenticator, unstable_features: dict[str, bool]
    ) -> None:
        self.config = config
        self.auth = auth
        # Filled by the composition root with what the server really supports.
        self.unstable_features = unstable_features

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_matrix/client/versions", self.versions),
            web.get("/.well-known/matrix/client", self.well_known),
            web.get("/.well-known/matrix/server", self.well_known_server),
            *client_routes("GET", "/capabilities", self.capabilities),
        ]

    async def versions(self, request: web.Request) -> web.Response:
        return json_response(
            {"versions": SPEC_VERSIONS, "unstable_features": self.unstable_features}
        )

    async def well_known(self, request: web.Request) -> web.Response:
        return json_response({"m.homeserver": {"base_url": public_client_url(self.config)}})

    async def well_known_server(self, request: web.Request) -> web.Response:
        """Server-server API "Server Discovery": delegation, when configured."""
        delegated = self.config.federation.well_known_server
        if delegated is None:
            raise not_found("No delegation is configured")
        return json_response({"m.server": delegated})

    async def capabilities(self, request: web.Request) -> web.Response:
        await self.auth.requester(request, allow_guest=True)
        caps: dict[str, Any] = {
            "m.room_versions": {
                "default": self.config.default_room_version,
                "available": {
                    v.identifier: "stable" if v.stable else "unstable"
                    for v in KNOWN_ROOM_VERSIONS.values()
                },
            },
            "m.change_password": {"enabled": True},
            "m.set_displayname": {"enabled": True},
            "m.set_avatar_url": {"enabled": True},
            "m.3pid_changes": {"enabled": self.config.email.enabled},
            "m.get_login_token": {"enabled": self.config.login_via_existing_session.enabled},
        }
        return json_response({"capabilities": caps})
