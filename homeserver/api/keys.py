"""Client API: /keys/* (spec: "Key management API", "Cross-signing")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.accounts.uia import UiaService
from homeserver.api.routes import client_routes
from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.keys import (
    DEFAULT_REMOTE_TIMEOUT_MS,
    MAX_REMOTE_TIMEOUT_MS,
    KeysService,
    check_user_map,
)
from homeserver.errors import bad_json, missing_param
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.streams.tokens import StreamToken


def _timeout(body: dict[str, Any]) -> int:
    value = body.get("timeout", DEFAULT_REMOTE_TIMEOUT_MS)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_json("'timeout' must be an integer")
    return max(0, min(MAX_REMOTE_TIMEOUT_MS, value))


UNSTABLE = "/_matrix/client/unstable"


class KeysApi:
    def __init__(
        self,
        keys: KeysService,
        cross_signing: CrossSigningService,
        accounts: AccountService,
        auth: Authenticator,
        uia: UiaService,
    ) -> None:
        self.keys = keys
        self.cross_signing = cross_signing
        self.accounts = accounts
        self.auth = auth
        self.uia = uia

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/keys/upload", self.upload),
            *client_routes("POST", "/keys/query", self.query),
            *client_routes("POST", "/keys/claim", self.claim),
            *client_routes("GET", "/keys/changes", self.changes),
            *client_routes("POST", "/keys/device_signing/upload", self.device_signing_upload),
            *client_routes("POST", "/keys/signatures/upload", self.signatures_upload),
            # The MSC1756 unstable paths, still used by older clients (and Sytest).
            web.post(UNSTABLE + "/keys/device_signing/upload", self.device_signing_upload),
            web.post(UNSTABLE + "/keys/signatures/upload", self.signatures_upload),
        ]

    async def upload(self, request: web.Request) -> web.Response:
        # Spec "Guest access": guests may upload, query and claim keys.
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request)
        counts = await self.keys.upload(requester.user_id, requester.device_id, body)
        return json_response({"one_time_key_counts": counts})

    async def query(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        body = await json_body(request)
        wanted = check_user_map(body.get("device_keys"), "device_keys")
        for devices in wanted.values():
            if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
                raise bad_json("'device_keys' must map user ids to lists of device ids")
        answer = await self.keys.query(requester.user_id, wanted, _timeout(body))
        return json_response(answer)

    async def claim(self, request: web.Request) -> web.Response:
        await self.auth.requester(request, allow_guest=True)
        body = await json_body(request)
        wanted = check_user_map(body.get("one_time_keys"), "one_time_keys")
        for devices in wanted.values():
            if not isinstance(devices, dict) or not all(
                isinstance(a, str) for a in devices.values()
            ):
                raise bad_json("'one_time_keys' must map user ids to {device id: algorithm}")
        return json_response(await self.keys.claim(wanted, _timeout(body)))

    async def changes(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        raw_from = request.query.get("from")
        raw_to = request.query.get("to")
        if raw_from is None or raw_to is None:
            raise missing_param("'from' and 'to' are required")
        since = StreamToken.parse(raw_from, "from")
        upto = StreamToken.parse(raw_to, "to")
        changed = await self.keys.device_list_changes(
            requester.user_id, since.device_lists, upto.device_lists
        )
        left = await self.keys.departed_room_mates(requester.user_id, since.events, upto.events)
        # Spec: also users who now share a room with the requester (invitees included,
        # as in /sync); an invitee is not reported as left meanwhile.
        arrived = await self.keys.arrived_room_mates(requester.user_id, since.events, upto.events)
        left -= arrived
        changed |= arrived
        return json_response({"changed": sorted(changed - left), "left": sorted(left)})

    async def device_signing_upload(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        keys = self.cross_signing.parse_upload(requester.user_id, body)
        if await self.cross_signing.needs_interactive_auth(requester.user_id, keys):
            await self.accounts.require_password(
                self.uia, requester, body.get("auth"), "device_signing_upload"
            )
        await self.cross_signing.upload_keys(requester.user_id, keys)
        return json_response({})

    async def signatures_upload(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        check_user_map(body, "body")
        failures = await self.cross_signing.upload_signatures(requester.user_id, body)
        return json_response({"failures": failures})
