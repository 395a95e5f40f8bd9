"""Client API: ``GET /admin/whois/{userId}`` (spec: "Server Administration"): a user's
devices and where they were last seen. Allowed to server admins and to the user
themself, as the spec permits."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.accounts.store import DeviceRecord
from homeserver.api.routes import client_routes
from homeserver.errors import forbidden, not_found
from homeserver.http.shell import json_response


def _connections(d: DeviceRecord) -> list[dict[str, Any]]:
    """The device's one known connection (the last), as ``ConnectionInfo``."""
    if d.last_seen_ip is None and d.last_seen_ts is None:
        return []
    info: dict[str, Any] = {}
    if d.last_seen_ip is not None:
        info["ip"] = d.last_seen_ip
    if d.last_seen_ts is not None:
        info["last_seen"] = d.last_seen_ts
    if d.last_seen_user_agent is not None:
        info["user_agent"] = d.last_seen_user_agent
    return [info]


class WhoisApi:
    def __init__(self, accounts: AccountService, auth: Authenticator) -> None:
        self.accounts = accounts
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return client_routes("GET", "/admin/whois/{userId}", self.whois)

    async def whois(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        user_id = request.match_info["userId"]
        if user_id != requester.user_id and not requester.is_admin:
            raise forbidden("Only server admins may look up other users")
        user = await self.accounts.store.get_user(user_id)
        if user is None:
            raise not_found("Unknown user")
        devices = await self.accounts.store.list_devices(user.user_nid)
        return json_response(
            {
                "user_id": user_id,
                "devices": {
                    d.device_id: {"sessions": [{"connections": _connections(d)}]} for d in devices
                },
            }
        )
