"""Client API: room upgrades, the room directory listing, relations and
threads, and content reports (spec: "Room Upgrades", "Listing rooms",
"Relationships", "Threading", "Reporting Content")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.errors import bad_json, invalid_param
from homeserver.http.bodies import json_body, opt_bool, opt_str, query_int, req_str
from homeserver.http.shell import Handler, json_response
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.directory_query import (
    public_rooms_query_from_body,
    public_rooms_query_from_params,
)
from homeserver.rooms.relations import RelationsService
from homeserver.rooms.reports import ReportService
from homeserver.rooms.upgrade import RoomUpgrader

V1 = "/_matrix/client/v1"


def _v1(method: str, path: str, handler: Handler) -> web.RouteDef:
    return web.route(method, V1 + path, handler)


class RoomFeaturesApi:
    def __init__(
        self,
        auth: Authenticator,
        upgrader: RoomUpgrader,
        directory: RoomDirectory,
        relations: RelationsService,
        reports: ReportService,
    ) -> None:
        self.auth = auth
        self.upgrader = upgrader
        self.directory = directory
        self.relations = relations
        self.reports = reports

    def routes(self) -> list[web.RouteDef]:
        rel = "/rooms/{roomId}/relations/{eventId}"
        return [
            *client_routes("POST", "/rooms/{roomId}/upgrade", self.upgrade),
            *client_routes("GET", "/directory/list/room/{roomId}", self.get_visibility),
            *client_routes("PUT", "/directory/list/room/{roomId}", self.put_visibility),
            *client_routes("GET", "/publicRooms", self.get_public_rooms),
            *client_routes("POST", "/publicRooms", self.post_public_rooms),
            _v1("GET", rel, self.get_relations),
            _v1("GET", rel + "/{relType}", self.get_relations),
            _v1("GET", rel + "/{relType}/{eventType}", self.get_relations),
            _v1("GET", "/rooms/{roomId}/threads", self.threads),
            *client_routes("POST", "/rooms/{roomId}/report/{eventId}", self.report_event),
            *client_routes("POST", "/rooms/{roomId}/report", self.report_room),
        ]

    async def upgrade(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        creators = body.get("additional_creators", [])
        if not isinstance(creators, list) or not all(isinstance(c, str) for c in creators):
            raise bad_json("'additional_creators' must be a list of user ids")
        new_room = await self.upgrader.upgrade(
            requester.user_id,
            request.match_info["roomId"],
            req_str(body, "new_version"),
            creators,
            without_encryption=opt_bool(body, "net.myelin.without_encryption", False),
        )
        return json_response({"replacement_room": new_room})

    async def get_visibility(self, request: web.Request) -> web.Response:
        visibility = await self.directory.visibility(request.match_info["roomId"])
        return json_response({"visibility": visibility})

    async def put_visibility(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        await self.directory.set_visibility(
            requester, request.match_info["roomId"], opt_str(body, "visibility") or "public"
        )
        return json_response({})

    async def get_public_rooms(self, request: web.Request) -> web.Response:
        # Spec: no authentication required for GET.
        query = public_rooms_query_from_params(request.query, request.query.get("server"))
        return json_response(await self.directory.public_rooms(query))

    async def post_public_rooms(self, request: web.Request) -> web.Response:
        await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        query = public_rooms_query_from_body(body, request.query.get("server"))
        return json_response(await self.directory.public_rooms(query))

    async def get_relations(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        direction = request.query.get("dir", "b")
        if direction not in ("b", "f"):
            raise invalid_param("'dir' must be 'b' or 'f'")
        recurse = request.query.get("recurse", "false")
        if recurse not in ("true", "false"):
            raise invalid_param("'recurse' must be true or false")
        answer = await self.relations.relations_of(
            requester.user_id,
            requester.device_id,
            request.match_info["roomId"],
            request.match_info["eventId"],
            rel_type=request.match_info.get("relType"),
            event_type=request.match_info.get("eventType"),
            from_token=request.query.get("from"),
            to_token=request.query.get("to"),
            limit=query_int(request, "limit", 50, 1, 1000),
            backwards=direction == "b",
            recurse=recurse == "true",
        )
        return json_response(answer)

    async def threads(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        answer = await self.relations.threads(
            requester.user_id,
            requester.device_id,
            request.match_info["roomId"],
            include=request.query.get("include", "all"),
            from_token=request.query.get("from"),
            limit=query_int(request, "limit", 50, 1, 1000),
        )
        return json_response(answer)

    async def report_event(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        score = body.get("score")
        if score is not None and (not isinstance(score, int) or isinstance(score, bool)):
            raise bad_json("'score' must be an integer")
        await self.reports.report_event(
            requester.user_id,
            request.match_info["roomId"],
            request.match_info["eventId"],
            opt_str(body, "reason"),
            score,
        )
        return json_response({})

    async def report_room(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request, allow_empty=True)
        await self.reports.report_room(
            requester.user_id, request.match_info["roomId"], opt_str(body, "reason")
        )
        return json_response({})
