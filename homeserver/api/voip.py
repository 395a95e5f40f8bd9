"""Client API: GET /voip/turnServer (spec "Voice over IP").

TURN credentials follow the TURN REST API convention (draft-uberti-behave-
turn-rest): username ``<expiry unix seconds>:<user id>``, password
base64(HMAC-SHA1(shared secret, username)), valid for ``ttl`` seconds.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.clock import Clock
from homeserver.config import TurnConfig
from homeserver.errors import not_found
from homeserver.http.shell import json_response


def turn_credentials(turn: TurnConfig, user_id: str, now_ms: int) -> dict[str, Any]:
    """Credentials for ``user_id``; 404 M_NOT_FOUND when no TURN server is configured.

    The response schema requires all four fields, so an empty ``{}`` would be
    wrong; MSC4166 (merged into the spec) makes "no TURN server" a 404 M_NOT_FOUND.
    """
    if not turn.uris or not turn.shared_secret:
        raise not_found("No TURN server is configured")
    ttl = turn.user_lifetime_seconds
    username = f"{now_ms // 1000 + ttl}:{user_id}"
    mac = hmac.new(turn.shared_secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "username": username,
        "password": base64.b64encode(mac).decode(),
        "uris": list(turn.uris),
        "ttl": ttl,
    }


class VoipApi:
    def __init__(self, auth: Authenticator, turn: TurnConfig, clock: Clock) -> None:
        self.auth = auth
        self.turn = turn
        self.clock = clock

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("GET", "/voip/turnServer", self.turn_server),
        ]

    async def turn_server(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        return json_response(turn_credentials(self.turn, requester.user_id, self.clock.now_ms()))
