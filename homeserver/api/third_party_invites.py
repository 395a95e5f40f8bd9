"""``/_matrix/federation/v1/3pid/onbind`` on the client listener: identity servers
call the homeserver's public URL (not the federation port) once an invited
address is bound, and do not authenticate as a homeserver; each invite's
``signed`` block is what the auth rules check (spec server-server "Third-party
invites"). The spec names PUT; Sytest's identity server and others POST."""

from __future__ import annotations

from aiohttp import web

from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response
from homeserver.rooms.third_party_invites import ThirdPartyInvites

ONBIND = "/_matrix/federation/v1/3pid/onbind"


class ThirdPartyInviteApi:
    def __init__(self, third_party: ThirdPartyInvites) -> None:
        self.third_party = third_party

    def routes(self) -> list[web.RouteDef]:
        return [web.put(ONBIND, self.onbind), web.post(ONBIND, self.onbind)]

    async def onbind(self, request: web.Request) -> web.Response:
        await self.third_party.on_bind(await json_body(request))
        return json_response({})
