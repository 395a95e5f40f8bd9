"""Remote room aliases: ``GET /directory/room/{alias}`` for another server's alias asks
that server's ``/_matrix/federation/v1/query/directory`` (spec: server-server "Room
aliases")."""

from __future__ import annotations

import logging

from federation.client import FederationClient
from federation.errors import FederationError
from homeserver.errors import MatrixError, not_found
from homeserver.events.identifiers import is_valid_server_name

log = logging.getLogger("myelin.federation.aliases")

PATH = "/_matrix/federation/v1/query/directory"
QUERY_TIMEOUT_S = 20.0
MAX_SERVERS = 100


class RemoteAliases:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def resolve(self, alias: str) -> tuple[str, list[str]]:
        """(room id, servers) for ``alias`` from its own server; 404 if it has none."""
        server = alias.split(":", 1)[1]
        if not is_valid_server_name(server):
            raise not_found("Room alias not found")
        try:
            answer = await self.client.get_json(
                server, PATH, {"room_alias": alias}, timeout_s=QUERY_TIMEOUT_S
            )
        except FederationError as e:
            log.info("alias query to %s failed: %s", server, e.status or "unreachable")
            if e.status == 404:
                raise not_found("Room alias not found") from None
            raise MatrixError(502, "M_UNKNOWN", "The alias's server did not answer") from None
        room_id = answer.get("room_id") if isinstance(answer, dict) else None
        servers = answer.get("servers") if isinstance(answer, dict) else None
        if not isinstance(room_id, str) or not room_id.startswith("!"):
            raise MatrixError(502, "M_UNKNOWN", "The alias's server gave a malformed answer")
        names = [s for s in servers if isinstance(s, str)] if isinstance(servers, list) else []
        return room_id, names[:MAX_SERVERS] or [server]
