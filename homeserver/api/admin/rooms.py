"""Admin API for rooms: list, details, members, state, block, shut down (+ status)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import (
    ADMIN_V1,
    ADMIN_V2,
    query_count,
    query_dir,
    query_text,
    require_admin,
)
from homeserver.errors import MatrixError, invalid_param
from homeserver.http.bodies import json_body, opt_bool, opt_str
from homeserver.http.shell import json_response
from homeserver.rooms.admin import ROOM_ORDERS, RoomAdmin, RoomQuery
from homeserver.rooms.store.admin_store import Shutdown

MAX_PAGE = 1000


def _status(s: Shutdown, with_id: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"status": s.status, "error": s.error, "shutdown_room": s.result}
    if with_id:
        out["delete_id"] = s.delete_id
    return out


class RoomAdminApi:
    def __init__(self, auth: Authenticator, rooms: RoomAdmin) -> None:
        self.auth = auth
        self.rooms = rooms

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(ADMIN_V1 + "/rooms", self.list_rooms),
            web.get(ADMIN_V1 + "/rooms/{roomId}", self.details),
            web.get(ADMIN_V1 + "/rooms/{roomId}/members", self.members),
            web.get(ADMIN_V1 + "/rooms/{roomId}/state", self.state),
            web.get(ADMIN_V1 + "/rooms/{roomId}/block", self.get_block),
            web.put(ADMIN_V1 + "/rooms/{roomId}/block", self.put_block),
            web.get(ADMIN_V2 + "/rooms/delete_status/{deleteId}", self.status_by_id),
            web.delete(ADMIN_V1 + "/rooms/{roomId}", self.delete_room_v1),
            web.delete(ADMIN_V2 + "/rooms/{roomId}", self.delete_room),
            web.get(ADMIN_V2 + "/rooms/{roomId}/delete_status", self.status_by_room),
        ]

    async def list_rooms(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        order_by = request.query.get("order_by", "name")
        if order_by not in ROOM_ORDERS:
            raise invalid_param(f"Unknown order_by {order_by!r}")
        query = RoomQuery(
            offset=query_count(request, "from", 0),
            limit=query_count(request, "limit", 100, MAX_PAGE),
            order_by=order_by,
            backwards=query_dir(request),
            search_term=query_text(request, "search_term"),
        )
        return json_response(await self.rooms.list_rooms(query))

    async def details(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response(await self.rooms.room_details(request.match_info["roomId"]))

    async def members(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        members = await self.rooms.members(request.match_info["roomId"])
        return json_response({"members": members, "total": len(members)})

    async def state(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response({"state": await self.rooms.state(request.match_info["roomId"])})

    async def get_block(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response(await self.rooms.block_status(request.match_info["roomId"]))

    async def put_block(self, request: web.Request) -> web.Response:
        admin = await require_admin(self.auth, request)
        body = await json_body(request)
        if not isinstance(body.get("block"), bool):
            raise invalid_param("'block' must be a boolean")
        await self.rooms.set_block(admin.user_id, request.match_info["roomId"], body["block"])
        return json_response({"block": body["block"]})

    async def _shutdown(self, request: web.Request) -> Shutdown:
        """Shut the room down now (and purge it unless ``purge: false``, Synapse's default)."""
        admin = await require_admin(self.auth, request)
        body = await json_body(request, allow_empty=True)
        block = opt_bool(body, "block", False)
        purge = opt_bool(body, "purge", True)
        force_purge = opt_bool(body, "force_purge", False)
        if opt_str(body, "new_room_user_id") is not None:
            raise invalid_param("new_room_user_id is not supported by this server")
        opt_str(body, "room_name")
        reason = opt_str(body, "message")
        return await self.rooms.shutdown(
            admin.user_id,
            request.match_info["roomId"],
            block=block,
            reason=reason,
            purge=purge,
            force_purge=force_purge,
        )

    async def delete_room(self, request: web.Request) -> web.Response:
        """The answer's delete_id names the recorded outcome (status endpoints)."""
        done = await self._shutdown(request)
        return json_response({"delete_id": done.delete_id})

    async def delete_room_v1(self, request: web.Request) -> web.Response:
        """Synapse's older form: the outcome itself (a failure is its error)."""
        done = await self._shutdown(request)
        if done.status == "failed":
            raise MatrixError(400, "M_UNKNOWN", done.error)
        return json_response(done.result)

    async def status_by_room(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        found = await self.rooms.shutdowns(request.match_info["roomId"])
        return json_response({"results": [_status(s, True) for s in found]})

    async def status_by_id(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        found = await self.rooms.shutdown_by_id(request.match_info["deleteId"])
        return json_response(_status(found, False))
