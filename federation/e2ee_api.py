"""Inbound federation routes of end-to-end encryption (server-server
"End-to-End Encryption" and "Device Management"): key queries, one-time key
claims and a user's device list, for our own users only."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from federation.auth import authenticated, signed_content
from homeserver.accounts.service import AccountService
from homeserver.e2ee.device_keys_store import DeviceKeysStore
from homeserver.e2ee.keys import KeysService, check_user_map
from homeserver.errors import bad_json, invalid_param, not_found
from homeserver.http.shell import json_response

# The requester of a federation query is a server, not a user: only signatures
# made by each key's owner are merged in, and user-signing keys never leave.
NO_USER = ""
MAX_USERS = 1000


class E2eeFederationApi:
    def __init__(
        self,
        server_name: str,
        keys: KeysService,
        device_keys: DeviceKeysStore,
        accounts: AccountService,
    ) -> None:
        self.server_name = server_name
        self.keys = keys
        self.device_keys = device_keys
        self.accounts = accounts

    def routes(self) -> list[web.RouteDef]:
        base = "/_matrix/federation/v1/user"
        return [
            web.post(f"{base}/keys/query", authenticated(self.query)),
            web.post(f"{base}/keys/claim", authenticated(self.claim)),
            web.get(f"{base}/devices/{{userId}}", authenticated(self.devices)),
        ]

    def _local(self, users: dict[str, Any]) -> dict[str, Any]:
        if len(users) > MAX_USERS:
            raise invalid_param(f"At most {MAX_USERS} users per request")
        return {u: v for u, v in users.items() if u.split(":", 1)[1] == self.server_name}

    async def query(self, request: web.Request, origin: str) -> web.Response:
        body = signed_content(request)
        if not isinstance(body, dict):
            raise bad_json("Request body must be a JSON object")
        wanted = self._local(check_user_map(body.get("device_keys"), "device_keys"))
        for devices in wanted.values():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json("'device_keys' must map user ids to lists of device ids")
        answer = await self.keys.query_local(NO_USER, wanted)
        answer.pop("user_signing_keys", None)
        return json_response(answer)

    async def claim(self, request: web.Request, origin: str) -> web.Response:
        body = signed_content(request)
        if not isinstance(body, dict):
            raise bad_json("Request body must be a JSON object")
        wanted = self._local(check_user_map(body.get("one_time_keys"), "one_time_keys"))
        for devices in wanted.values():
            if not isinstance(devices, dict) or not all(
                isinstance(a, str) for a in devices.values()
            ):
                raise bad_json("'one_time_keys' must map user ids to {device id: algorithm}")
        answer = await self.keys.claim(wanted, 0)
        return json_response({"one_time_keys": answer["one_time_keys"]})

    async def devices(self, request: web.Request, origin: str) -> web.Response:
        user_id = request.match_info["userId"]
        if not user_id.startswith("@") or user_id.split(":", 1)[-1] != self.server_name:
            raise invalid_param("User is not local to this server")
        if await self.accounts.store.get_user(user_id) is None:
            raise not_found("Unknown user")
        found = await self.keys.query_local(NO_USER, {user_id: []})
        devices = []
        for device_id, keys in sorted(found["device_keys"].get(user_id, {}).items()):
            entry: dict[str, Any] = {"device_id": device_id}
            name = keys.get("unsigned", {}).get("device_display_name")
            if name is not None:
                entry["device_display_name"] = name
            entry["keys"] = {k: v for k, v in keys.items() if k != "unsigned"}
            devices.append(entry)
        latest = await self.device_keys.recent_device_changes(user_id, 1)
        answer: dict[str, Any] = {
            "user_id": user_id,
            "stream_id": latest[0][0] if latest else 0,
            "devices": devices,
        }
        if user_id in found["master_keys"]:
            answer["master_key"] = found["master_keys"][user_id]
        if user_id in found["self_signing_keys"]:
            answer["self_signing_key"] = found["self_signing_keys"][user_id]
        return json_response(answer)
