"""Inbound federation routes about rooms: membership handshakes and graph reads.

Thin handlers: authenticated origin, path/query parsing, one service call.
"""

from __future__ import annotations

from aiohttp import web

from federation.auth import authenticated, signed_content
from federation.membership.resident import ResidentMembership
from federation.reads import RoomReads
from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.http.shell import json_response

V1 = "/_matrix/federation/v1"
V2 = "/_matrix/federation/v2"


def _query(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise missing_param(f"'{name}' is required")
    return value


def _flag(value: str | None) -> bool:
    """A boolean query parameter (``omit_members``): absent is false."""
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise invalid_param("Expected 'true' or 'false'")


class RoomsFederationApi:
    def __init__(self, resident: ResidentMembership, reads: RoomReads) -> None:
        self.resident = resident
        self.reads = reads

    def routes(self) -> list[web.RouteDef]:
        a = authenticated
        return [
            web.get(V1 + "/make_join/{roomId}/{userId}", a(self.make_join)),
            web.put(V2 + "/send_join/{roomId}/{eventId}", a(self.send_join)),
            web.put(V1 + "/send_join/{roomId}/{eventId}", a(self.send_join_v1)),
            web.get(V1 + "/make_leave/{roomId}/{userId}", a(self.make_leave)),
            web.put(V2 + "/send_leave/{roomId}/{eventId}", a(self.send_leave)),
            web.put(V1 + "/send_leave/{roomId}/{eventId}", a(self.send_leave_v1)),
            web.get(V1 + "/make_knock/{roomId}/{userId}", a(self.make_knock)),
            web.put(V1 + "/send_knock/{roomId}/{eventId}", a(self.send_knock)),
            web.put(V2 + "/invite/{roomId}/{eventId}", a(self.invite)),
            web.put(V1 + "/invite/{roomId}/{eventId}", a(self.invite_v1)),
            web.get(V1 + "/event/{eventId}", a(self.event)),
            web.get(V1 + "/state/{roomId}", a(self.state)),
            web.get(V1 + "/state_ids/{roomId}", a(self.state_ids)),
            web.get(V1 + "/event_auth/{roomId}/{eventId}", a(self.event_auth)),
            web.get(V1 + "/backfill/{roomId}", a(self.backfill)),
            web.post(V1 + "/get_missing_events/{roomId}", a(self.get_missing_events)),
            web.get(V1 + "/query/directory", a(self.query_directory)),
        ]

    async def _make(self, request: web.Request, origin: str, kind: str) -> web.Response:
        m = request.match_info
        versions = request.query.getall("ver", ["1"]) if kind != "leave" else None
        return json_response(
            await self.resident.make(origin, m["roomId"], m["userId"], kind, versions)
        )

    async def make_join(self, request: web.Request, origin: str) -> web.Response:
        return await self._make(request, origin, "join")

    async def make_leave(self, request: web.Request, origin: str) -> web.Response:
        return await self._make(request, origin, "leave")

    async def make_knock(self, request: web.Request, origin: str) -> web.Response:
        return await self._make(request, origin, "knock")

    async def send_join(self, request: web.Request, origin: str) -> web.Response:
        m = request.match_info
        return json_response(
            await self.resident.send_join(
                origin,
                m["roomId"],
                m["eventId"],
                signed_content(request),
                omit_members=_flag(request.query.get("omit_members")),
            )
        )

    async def send_join_v1(self, request: web.Request, origin: str) -> web.Response:
        """Deprecated ``PUT /v1/send_join``: the v2 answer wrapped as ``[200, {...}]``."""
        m = request.match_info
        answer = await self.resident.send_join(
            origin, m["roomId"], m["eventId"], signed_content(request)
        )
        return json_response([200, answer])

    async def send_leave_v1(self, request: web.Request, origin: str) -> web.Response:
        """Deprecated ``PUT /v1/send_leave``: answers ``[200, {}]``."""
        m = request.match_info
        await self.resident.send(
            origin, m["roomId"], m["eventId"], signed_content(request), "leave"
        )
        return json_response([200, {}])

    async def send_leave(self, request: web.Request, origin: str) -> web.Response:
        m = request.match_info
        await self.resident.send(
            origin, m["roomId"], m["eventId"], signed_content(request), "leave"
        )
        return json_response({})

    async def send_knock(self, request: web.Request, origin: str) -> web.Response:
        m = request.match_info
        return json_response(
            await self.resident.send_knock(
                origin, m["roomId"], m["eventId"], signed_content(request)
            )
        )

    async def invite(self, request: web.Request, origin: str) -> web.Response:
        m = request.match_info
        return json_response(
            await self.resident.receive_invite(
                origin, m["roomId"], m["eventId"], signed_content(request)
            )
        )

    async def invite_v1(self, request: web.Request, origin: str) -> web.Response:
        """Deprecated ``PUT /v1/invite``: the body is the event itself, the room is
        version 1 or 2 (the spec says to assume so; both share one event format),
        and the answer is ``[200, {"event": ...}]``."""
        m = request.match_info
        pdu = signed_content(request)
        if not isinstance(pdu, dict):
            raise bad_json("Expected the invite event")
        unsigned = pdu.get("unsigned")
        state = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
        body = {"event": pdu, "room_version": "1", "invite_room_state": state or []}
        answer = await self.resident.receive_invite(origin, m["roomId"], m["eventId"], body)
        return json_response([200, answer])

    async def event(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self.reads.event(origin, request.match_info["eventId"]))

    async def state(self, request: web.Request, origin: str) -> web.Response:
        room_id, event_id = request.match_info["roomId"], _query(request, "event_id")
        return json_response(await self.reads.state(origin, room_id, event_id, ids_only=False))

    async def state_ids(self, request: web.Request, origin: str) -> web.Response:
        room_id, event_id = request.match_info["roomId"], _query(request, "event_id")
        return json_response(await self.reads.state(origin, room_id, event_id, ids_only=True))

    async def event_auth(self, request: web.Request, origin: str) -> web.Response:
        m = request.match_info
        return json_response(await self.reads.event_auth(origin, m["roomId"], m["eventId"]))

    async def backfill(self, request: web.Request, origin: str) -> web.Response:
        limit = request.query.get("limit", "10")
        if not limit.isdigit():
            raise missing_param("'limit' must be an integer")
        return json_response(
            await self.reads.backfill(
                origin, request.match_info["roomId"], request.query.getall("v", []), int(limit)
            )
        )

    async def get_missing_events(self, request: web.Request, origin: str) -> web.Response:
        return json_response(
            await self.reads.missing_events(
                origin, request.match_info["roomId"], signed_content(request)
            )
        )

    async def query_directory(self, request: web.Request, origin: str) -> web.Response:
        return json_response(await self.reads.query_directory(_query(request, "room_alias")))
