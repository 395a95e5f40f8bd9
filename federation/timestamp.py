"""Jump to date over federation (server-server "GET /timestamp_to_event/{roomId}").

Inbound: a server in the room asks for the event nearest a timestamp among ours.
Outbound: a local user's lookup found nothing here (history from before this
server joined), so the room's other servers are asked in turn.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from federation.auth import authenticated
from federation.client import FederationClient
from federation.errors import FederationError
from homeserver.events.identifiers import is_valid_server_name
from homeserver.http.shell import json_response
from homeserver.rooms.timestamp import TimestampLookup, parse_query

log = logging.getLogger("myelin.federation.timestamp")

PATH = "/_matrix/federation/v1/timestamp_to_event/{room_id}"
QUERY_TIMEOUT_S = 10.0


class TimestampFederationApi:
    def __init__(self, lookup: TimestampLookup) -> None:
        self.lookup = lookup

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, authenticated(self.get))]

    async def get(self, request: web.Request, origin: str) -> web.Response:
        ts, direction = parse_query(request.query.get("ts"), request.query.get("dir"))
        room_id = request.match_info["room_id"]
        return json_response(await self.lookup.for_server(origin, room_id, ts, direction))


class RemoteTimestamps:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def query(
        self, servers: list[str], room_id: str, ts: int, direction: str
    ) -> dict[str, Any] | None:
        path = PATH.format(room_id=quote(room_id, safe=""))
        for server in servers:
            if not is_valid_server_name(server):
                continue
            try:
                answer = await self.client.get_json(
                    server, path, {"ts": str(ts), "dir": direction}, timeout_s=QUERY_TIMEOUT_S
                )
            except FederationError as e:
                log.info("timestamp_to_event to %s failed: %s", server, e.status or "unreachable")
                continue
            if (
                isinstance(answer, dict)
                and isinstance(answer.get("event_id"), str)
                and answer["event_id"].startswith("$")
                and isinstance(answer.get("origin_server_ts"), int)
            ):
                return {
                    "event_id": answer["event_id"],
                    "origin_server_ts": answer["origin_server_ts"],
                }
        return None
