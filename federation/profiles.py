"""Profiles of users on other servers, for the client's ``GET /profile/{userId}``.

Spec: client-server "Profiles" (a homeserver answers for remote users by asking
their server) and server-server "Querying for information"
(``GET /_matrix/federation/v1/query/profile``). Only the string fields the client
API defines are passed on.
"""

from __future__ import annotations

import logging

from federation.client import FederationClient
from federation.errors import FederationError
from homeserver.errors import not_found
from homeserver.events.identifiers import is_valid_server_name

log = logging.getLogger("myelin.federation.profiles")

PROFILE_FIELDS = ("displayname", "avatar_url")
QUERY_TIMEOUT_S = 10.0


class RemoteProfiles:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def lookup(self, user_id: str) -> dict[str, str]:
        """The remote user's profile; ``M_NOT_FOUND`` when their server has none or is
        unreachable (the client API's answer for a profile that cannot be had)."""
        server = user_id.partition(":")[2]
        if not is_valid_server_name(server):
            raise not_found("Profile not found")
        try:
            body = await self.client.get_json(
                server,
                "/_matrix/federation/v1/query/profile",
                {"user_id": user_id},
                timeout_s=QUERY_TIMEOUT_S,
            )
        except FederationError as e:
            log.info("profile query to %s failed: %s", server, e.status or "unreachable")
            raise not_found("Profile not found") from None
        if not isinstance(body, dict):
            raise not_found("Profile not found")
        return {k: v for k, v in body.items() if k in PROFILE_FIELDS and isinstance(v, str)}
