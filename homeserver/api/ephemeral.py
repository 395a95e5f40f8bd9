"""Client API: typing, receipts and read markers (spec: "Typing Notifications",
"Receipts", "Read and unread markers")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json, forbidden, invalid_param
from homeserver.http.bodies import json_body, opt_bool, opt_str
from homeserver.http.shell import json_response
from homeserver.rooms.ephemeral.receipts import FULLY_READ, READ, READ_PRIVATE, ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService


def _room_id(request: web.Request) -> str:
    room_id = request.match_info["roomId"]
    if not room_id.startswith("!") or len(room_id.encode("utf-8", "replace")) > 255:
        raise invalid_param("Invalid room ID")
    return room_id


class EphemeralApi:
    def __init__(
        self, typing: TypingService, receipts: ReceiptService, auth: Authenticator
    ) -> None:
        self.typing = typing
        self.receipts = receipts
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        return [
            *client_routes("PUT", "/rooms/{roomId}/typing/{userId}", self.put_typing),
            *client_routes(
                "POST", "/rooms/{roomId}/receipt/{receiptType}/{eventId}", self.post_receipt
            ),
            *client_routes("POST", "/rooms/{roomId}/read_markers", self.post_read_markers),
        ]

    async def put_typing(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        room_id = _room_id(request)
        if request.match_info["userId"] != requester.user_id:
            raise forbidden("You may only set your own typing state")
        body = await json_body(request)
        if "typing" not in body:
            raise bad_json("'typing' is required")
        typing = opt_bool(body, "typing", False)
        timeout = body.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0
        ):
            raise bad_json("'timeout' must be a non-negative integer")
        await self.typing.set_typing(requester.user_id, room_id, typing, timeout)
        return json_response({})

    async def post_receipt(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        room_id = _room_id(request)
        body = await json_body(request, allow_empty=True)
        await self.receipts.send_receipt(
            requester.user_id,
            room_id,
            request.match_info["receiptType"],
            request.match_info["eventId"],
            body.get("thread_id"),
        )
        return json_response({})

    async def post_read_markers(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        room_id = _room_id(request)
        body = await json_body(request, allow_empty=True)
        await self.receipts.set_read_markers(
            requester.user_id,
            room_id,
            fully_read=opt_str(body, FULLY_READ),
            read=opt_str(body, READ),
            read_private=opt_str(body, READ_PRIVATE),
        )
        return json_response({})
