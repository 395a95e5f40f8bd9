"""``/_matrix/federation/v1/3pid/onbind`` on the client listener: identity servers
call the homeserver's public URL (not the federation port) once an invited
address is bound, and do not authenticate as a homeserver; each invite's
``signed`` block is what the auth rules check (spec server-server "Third-party
invites"). The spec names PUT; Sytest's identity server and others POST."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.net import client_ip
from homeserver.ratelimit import RateLimiter
from homeserver.rooms.third_party_invites import ThirdPartyInvites

ONBIND = "/_matrix/federation/v1/3pid/onbind"


class ThirdPartyInviteApi:
    def __init__(self, third_party: ThirdPartyInvites, limiter: RateLimiter) -> None:
        self.third_party = third_party
        self.limiter = limiter

    def routes(self) -> list[web.RouteDef]:
        return [web.put(ONBIND, self.onbind), web.post(ONBIND, self.onbind)]

    async def onbind(self, request: web.Request) -> web.Response:
        # Unauthenticated, and it may make this server fetch key_validity_urls.
        self.limiter.check("per_ip", client_ip(request))
        await self.third_party.on_bind(await json_body(request))
        return json_response({})
