"""Space hierarchies over federation (server-server "GET /hierarchy/{roomId}").

Inbound: another server asks for a space this server is in; the answer is
the room, its children this server knows, and those the asker may not see.
Outbound: a local user's walk reaches a room this server is not in, and asks
the servers of the child event's ``via`` in turn, until one answers.
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
from homeserver.rooms.hierarchy import SpaceHierarchy, parse_bool

log = logging.getLogger("myelin.federation.hierarchy")

PATH = "/_matrix/federation/v1/hierarchy/{room_id}"
QUERY_TIMEOUT_S = 20.0
MAX_ANSWER_BYTES = 4 * 1024 * 1024


class HierarchyFederationApi:
    def __init__(self, hierarchy: SpaceHierarchy) -> None:
        self.hierarchy = hierarchy

    def routes(self) -> list[web.RouteDef]:
        return [web.get(PATH, authenticated(self.get))]

    async def get(self, request: web.Request, origin: str) -> web.Response:
        suggested = parse_bool(request.query.get("suggested_only"), "suggested_only")
        room_id = request.match_info["room_id"]
        return json_response(await self.hierarchy.for_server(origin, room_id, suggested))


class RemoteHierarchies:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def query(
        self, servers: list[str], room_id: str, suggested_only: bool
    ) -> dict[str, Any] | None:
        """The first well-formed answer of ``servers`` for ``room_id``, or None."""
        path = PATH.format(room_id=quote(room_id, safe=""))
        params = {"suggested_only": "true" if suggested_only else "false"}
        for server in servers:
            if not is_valid_server_name(server) or server == self.client.server_name:
                continue
            try:
                answer = await self.client.get_json(
                    server,
                    path,
                    params,
                    timeout_s=QUERY_TIMEOUT_S,
                    max_response_bytes=MAX_ANSWER_BYTES,
                )
            except FederationError as e:
                log.info("hierarchy query to %s failed: %s", server, e.status or "unreachable")
                continue
            if isinstance(answer, dict) and isinstance(answer.get("room"), dict):
                return answer
        return None
