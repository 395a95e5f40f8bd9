"""Client API: createRoom, sending events, room state, redaction (spec: "Rooms", "Events")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json
from homeserver.http.bodies import json_body, opt_bool, opt_dict, opt_str, req_str
from homeserver.http.shell import json_response
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.creation import CreateRoomRequest, RoomCreator
from homeserver.rooms.persist import TxnRef
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.redact import redact_event
from homeserver.rooms.service import RoomService


def _list_of(body: dict[str, Any], key: str, kind: type) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise bad_json(f"'{key}' must be a list")
    return value


class RoomsApi:
    def __init__(
        self,
        auth: Authenticator,
        rooms: RoomService,
        creator: RoomCreator,
        reader: RoomReader,
        aliases: AliasService,
    ) -> None:
        self.auth = auth
        self.rooms = rooms
        self.creator = creator
        self.reader = reader
        self.aliases = aliases

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("POST", "/createRoom", self.create_room),
            *client_routes("PUT", "/rooms/{roomId}/send/{type}/{txnId}", self.send),
            *client_routes("GET", "/rooms/{roomId}/state", self.get_state),
            *client_routes("GET", "/rooms/{roomId}/state/{type}", self.get_state_event),
            *client_routes("GET", "/rooms/{roomId}/state/{type}/", self.get_state_event),
            *client_routes("GET", "/rooms/{roomId}/state/{type}/{stateKey}", self.get_state_event),
            *client_routes("PUT", "/rooms/{roomId}/state/{type}", self.put_state),
            *client_routes("PUT", "/rooms/{roomId}/state/{type}/", self.put_state),
            *client_routes("PUT", "/rooms/{roomId}/state/{type}/{stateKey}", self.put_state),
            *client_routes("PUT", "/rooms/{roomId}/redact/{eventId}/{txnId}", self.redact),
            # Without a transaction id (so not idempotent): the early client API's POST
            # forms, which older clients and Sytest still use and Synapse still serves.
            *client_routes("POST", "/rooms/{roomId}/send/{type}", self.send),
            *client_routes("POST", "/rooms/{roomId}/redact/{eventId}", self.redact),
            *client_routes("GET", "/rooms/{roomId}/event/{eventId}", self.get_event),
        ]

    async def create_room(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        initial_state = _list_of(body, "initial_state", dict)
        req = CreateRoomRequest(
            creator=requester.user_id,
            preset=opt_str(body, "preset"),
            visibility=opt_str(body, "visibility") or "private",
            room_alias_name=opt_str(body, "room_alias_name"),
            name=opt_str(body, "name"),
            topic=opt_str(body, "topic"),
            invite=_list_of(body, "invite", str),
            invite_3pid=[_invite_3pid(e) for e in _list_of(body, "invite_3pid", dict)],
            initial_state=initial_state,
            room_version=opt_str(body, "room_version"),
            creation_content=opt_dict(body, "creation_content") or {},
            power_level_content_override=opt_dict(body, "power_level_content_override"),
            is_direct=opt_bool(body, "is_direct", False),
        )
        room = await self.creator.create_room(req)
        return json_response({"room_id": room.room_id})

    async def send(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        content = await json_body(request)
        txn = _txn(request, requester.user_id, requester.device_id)
        event_id = await self.rooms.send_event(
            requester.user_id,
            request.match_info["roomId"],
            request.match_info["type"],
            content,
            None,
            txn,
        )
        return json_response({"event_id": event_id})

    async def put_state(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        content = await json_body(request)
        if request.match_info["type"] == "m.room.canonical_alias":
            await self.aliases.check_canonical_alias(
                request.match_info["roomId"], content, request.match_info.get("stateKey", "")
            )
        event_id = await self.rooms.send_event(
            requester.user_id,
            request.match_info["roomId"],
            request.match_info["type"],
            content,
            request.match_info.get("stateKey", ""),
        )
        return json_response({"event_id": event_id})

    async def get_state(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        return json_response(
            await self.reader.state_json(requester.user_id, request.match_info["roomId"])
        )

    async def get_state_event(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        stored = await self.reader.state_event(
            requester.user_id,
            request.match_info["roomId"],
            request.match_info["type"],
            request.match_info.get("stateKey", ""),
        )
        # Serialized either way, so a redacted state event answers its redacted content.
        (event,) = await self.reader.serializer.serialize([stored])
        if request.query.get("format") == "event":
            return json_response(event)
        return json_response(event["content"])

    async def redact(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        txn = _txn(request, requester.user_id, requester.device_id)
        event_id = await redact_event(
            self.rooms,
            requester.user_id,
            request.match_info["roomId"],
            request.match_info["eventId"],
            opt_str(body, "reason"),
            txn,
        )
        return json_response({"event_id": event_id})

    async def get_event(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        event = await self.reader.get_event(
            requester.user_id,
            requester.device_id,
            request.match_info["roomId"],
            request.match_info["eventId"],
        )
        return json_response(event)


def _txn(request: web.Request, user_id: str, device_id: str) -> TxnRef | None:
    txn_id = request.match_info.get("txnId")
    return None if txn_id is None else TxnRef(user_id, device_id, txn_id)


def _invite_3pid(entry: dict[str, Any]) -> dict[str, str]:
    """One ``invite_3pid`` entry of createRoom: four strings, all required (spec)."""
    return {
        key: req_str(entry, key) for key in ("id_server", "id_access_token", "medium", "address")
    }
