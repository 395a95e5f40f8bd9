"""Client API: GET /sync (spec: "Syncing")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import invalid_param
from homeserver.http.bodies import query_int
from homeserver.http.shell import json_response
from homeserver.streams.tokens import StreamToken
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.model import SET_PRESENCE, SyncRequest

MAX_TIMEOUT_MS = 5 * 60 * 1000


class SyncApi:
    def __init__(self, auth: Authenticator, builder: SyncBuilder) -> None:
        self.auth = auth
        self.builder = builder

    def routes(self) -> list[web.RouteDef]:
        return client_routes("GET", "/sync", self.sync)

    async def sync(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        q = request.query
        since = q.get("since")
        full_state = q.get("full_state", "false")
        if full_state not in ("true", "false"):
            raise invalid_param("full_state must be true or false")
        set_presence = q.get("set_presence", "online")
        if set_presence not in SET_PRESENCE:
            raise invalid_param("set_presence must be one of " + ", ".join(SET_PRESENCE))
        req = SyncRequest(
            user_id=requester.user_id,
            device_id=requester.device_id,
            user_nid=requester.user_nid,
            is_guest=requester.is_guest,
            since=StreamToken.parse(since, "since") if since else None,
            timeout_ms=query_int(request, "timeout", 0, 0, MAX_TIMEOUT_MS),
            full_state=full_state == "true",
            filter_param=q.get("filter"),
            set_presence=set_presence,
            encoded_state=True,
        )
        return json_response(await self.builder.sync(req))
