"""/_synapse/admin/v1/server_version and the spec's /.well-known/matrix/support."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import ADMIN_V1, require_admin
from homeserver.config import SupportConfig
from homeserver.errors import not_found
from homeserver.http.shell import json_response


def server_version() -> str:
    # Imported here, as in federation/server.py: ~1 MiB idle for a rare request.
    from importlib import metadata

    try:
        return metadata.version("myelin")
    except metadata.PackageNotFoundError:
        return "unknown"


class ServerAdminApi:
    def __init__(self, auth: Authenticator, support: SupportConfig) -> None:
        self.auth = auth
        self.support = support

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(ADMIN_V1 + "/server_version", self.server_version),
            web.get("/.well-known/matrix/support", self.well_known_support),
        ]

    async def server_version(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response({"server_version": server_version()})

    async def well_known_support(self, request: web.Request) -> web.Response:
        """Spec "Getting the support information": 404 when nothing is configured."""
        if not self.support.contacts and not self.support.support_page:
            raise not_found("No support information is configured")
        body: dict[str, Any] = {}
        if self.support.contacts:
            body["contacts"] = [
                {
                    k: v
                    for k, v in (
                        ("role", c.role),
                        ("matrix_id", c.matrix_id),
                        ("email_address", c.email_address),
                    )
                    if v is not None
                }
                for c in self.support.contacts
            ]
        if self.support.support_page:
            body["support_page"] = self.support.support_page
        return json_response(body)
