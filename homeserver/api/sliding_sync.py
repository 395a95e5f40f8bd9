"""Client API: simplified sliding sync (MSC4186), as Synapse and Element X speak it.

``POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`` with the
position in ``pos`` and the long-poll time in ``timeout`` (query), the
lists, subscriptions and extensions in the body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.http.bodies import json_body, query_int
from homeserver.http.shell import json_response
from homeserver.lazy import OnFirstUse

if TYPE_CHECKING:
    from homeserver.sync.sliding.service import SlidingSync

PATH = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
MAX_TIMEOUT_MS = 5 * 60 * 1000


class SlidingSyncApi:
    def __init__(self, auth: Authenticator, sliding: OnFirstUse[SlidingSync]) -> None:
        self.auth = auth
        self.sliding = sliding

    def routes(self) -> list[web.RouteDef]:
        return [web.post(PATH, self.sync)]

    async def sync(self, request: web.Request) -> web.Response:
        # Here, not at the top: sliding sync loads on first use (``homeserver.lazy``).
        from homeserver.sync.sliding.request import parse_request
        from homeserver.sync.sliding.service import SlidingCall

        requester = await self.auth.requester(request)
        sliding = self.sliding.get()
        body = parse_request(await json_body(request, allow_empty=True))
        call = SlidingCall(
            user_id=requester.user_id,
            device_id=requester.device_id,
            user_nid=requester.user_nid,
            pos=request.query.get("pos"),
            timeout_ms=query_int(request, "timeout", 0, 0, MAX_TIMEOUT_MS),
            body=body,
        )
        return json_response(await sliding.sync(call))
