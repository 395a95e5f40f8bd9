"""Third-party invites across servers (server-server "Third-party invites").

Inbound ``PUT /exchange_third_party_invite/{roomId}``: a server whose user redeemed
a third-party invite hands it to us, the inviter's server, to send as the
inviter. Outbound: the same, when the inviter is another server's user.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

from aiohttp import web

from federation.auth import authenticated, signed_content
from federation.client import FederationClient
from federation.errors import FederationError
from homeserver.errors import MatrixError
from homeserver.events.identifiers import is_valid_server_name
from homeserver.http.shell import json_response
from homeserver.rooms.third_party_invites import ThirdPartyInvites

log = logging.getLogger("myelin.federation.third_party_invites")

PATH = "/_matrix/federation/v1/exchange_third_party_invite/{room_id}"
TIMEOUT_S = 30.0


class ThirdPartyInviteFederationApi:
    def __init__(self, invites: ThirdPartyInvites) -> None:
        self.invites = invites

    def routes(self) -> list[web.RouteDef]:
        return [web.put(PATH, authenticated(self.exchange))]

    async def exchange(self, request: web.Request, origin: str) -> web.Response:
        body = signed_content(request)
        await self.invites.on_exchange(origin, request.match_info["room_id"], body)
        return json_response({})


class RemoteThirdPartyInvites:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def forward(self, destination: str, room_id: str, event: dict[str, Any]) -> None:
        """Ask ``destination`` (the inviter's server) to send the invite; its refusal
        is passed on to our caller."""
        if not is_valid_server_name(destination):
            raise MatrixError(400, "M_INVALID_PARAM", "The inviter's server name is invalid")
        path = PATH.format(room_id=quote(room_id, safe=""))
        try:
            await self.client.put_json(destination, path, event, timeout_s=TIMEOUT_S)
        except FederationError as e:
            log.info("exchange_third_party_invite to %s failed: %s", destination, e.status)
            if e.status is not None and 400 <= e.status < 500:
                raise MatrixError(
                    403, "M_FORBIDDEN", f"The inviter's server refused the invite: HTTP {e.status}"
                ) from None
            raise MatrixError(
                502, "M_UNKNOWN", "The inviter's server could not be reached"
            ) from None
