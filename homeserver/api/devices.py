"""Client API: /devices, /delete_devices (spec: "Device Management")."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.accounts.store import DeviceRecord
from homeserver.accounts.uia import UiaService
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json, not_found
from homeserver.http.bodies import json_body, opt_str
from homeserver.http.shell import json_response


def _device_json(d: DeviceRecord) -> dict[str, Any]:
    # Every key present, null when unknown: matrix-nio requires all four keys (and
    # Synapse answers so), although the spec types them as optional strings.
    return {
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
    }


class DevicesApi:
    def __init__(self, accounts: AccountService, auth: Authenticator, uia: UiaService) -> None:
        self.accounts = accounts
        self.auth = auth
        self.uia = uia

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/devices", self.list_devices),
            *client_routes("GET", "/devices/{deviceId}", self.get_device),
            *client_routes("PUT", "/devices/{deviceId}", self.put_device),
            *client_routes("DELETE", "/devices/{deviceId}", self.delete_device),
            *client_routes("POST", "/delete_devices", self.delete_devices),
        ]

    async def list_devices(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        devices = await self.accounts.store.list_devices(requester.user_nid)
        return json_response({"devices": [_device_json(d) for d in devices]})

    async def get_device(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        device = await self.accounts.store.get_device(
            requester.user_nid, request.match_info["deviceId"]
        )
        if device is None:
            raise not_found("Unknown device")
        # One device: unknown fields are omitted, as the schema types them as strings and
        # integers (the list keeps nulls for matrix-nio, see _device_json).
        return json_response({k: v for k, v in _device_json(device).items() if v is not None})

    async def put_device(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request, allow_empty=True)
        device_id = request.match_info["deviceId"]
        if "display_name" not in body:
            # Spec: "If not given, the display name is unchanged."
            if await self.accounts.store.get_device(requester.user_nid, device_id) is None:
                raise not_found("Unknown device")
            return json_response({})
        name = opt_str(body, "display_name")
        await self.accounts.rename_device(requester.user_id, requester.user_nid, device_id, name)
        return json_response({})

    async def delete_device(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        device_id = request.match_info["deviceId"]
        body = await json_body(request, allow_empty=True)
        if await self.accounts.store.get_device(requester.user_nid, device_id) is None:
            raise not_found("Unknown device")
        # The session is bound to this device: it cannot then delete another one.
        await self.accounts.require_password(
            self.uia, requester, body.get("auth"), "delete_devices " + json.dumps([device_id])
        )
        await self.accounts.delete_devices(requester.user_id, requester.user_nid, [device_id])
        return json_response({})

    async def delete_devices(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        devices = body.get("devices")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise bad_json("'devices' must be a list of device ids")
        await self.accounts.require_password(
            self.uia, requester, body.get("auth"), "delete_devices " + json.dumps(sorted(devices))
        )
        await self.accounts.delete_devices(requester.user_id, requester.user_nid, devices)
        return json_response({})
