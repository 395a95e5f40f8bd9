"""The room directory over federation (server-server "Public Room Directory").

Inbound: ``GET``/``POST /_matrix/federation/v1/publicRooms`` answer with our
published rooms, exactly as the client API lists them. Outbound: a client's
``/publicRooms?server=other`` asks that server (``GET`` without a filter,
``POST`` with one) and passes its answer on, keeping only well-formed entries.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from federation.auth import authenticated, signed_content
from federation.client import FederationClient
from federation.errors import FederationError
from homeserver.errors import MatrixError, bad_json, not_found
from homeserver.events.identifiers import is_valid_server_name
from homeserver.http.shell import json_response
from homeserver.rooms.directory import PublicRoomsQuery, RoomDirectory
from homeserver.rooms.directory_query import (
    public_rooms_query_from_body,
    public_rooms_query_from_params,
)

log = logging.getLogger("myelin.federation.public_rooms")

PATH = "/_matrix/federation/v1/publicRooms"
QUERY_TIMEOUT_S = 20.0


class PublicRoomsFederationApi:
    def __init__(self, directory: RoomDirectory) -> None:
        self.directory = directory

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(PATH, authenticated(self.get)),
            web.post(PATH, authenticated(self.post)),
        ]

    async def get(self, request: web.Request, origin: str) -> web.Response:
        query = public_rooms_query_from_params(request.query, None)
        return json_response(await self.directory.public_rooms(query))

    async def post(self, request: web.Request, origin: str) -> web.Response:
        body = signed_content(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise bad_json("The body must be a JSON object")
        query = public_rooms_query_from_body(body, None)
        return json_response(await self.directory.public_rooms(query))


class RemotePublicRooms:
    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def query(self, server: str, query: PublicRoomsQuery) -> dict[str, Any]:
        """``server``'s directory page for ``query``, in the client API's shape."""
        if not is_valid_server_name(server):
            raise not_found("Unknown server")
        try:
            if query.search_term is None and query.room_types is None:
                answer = await self.client.get_json(
                    server, PATH, _params(query), timeout_s=QUERY_TIMEOUT_S
                )
            else:
                answer = await self.client.post_json(
                    server, PATH, _body(query), timeout_s=QUERY_TIMEOUT_S
                )
        except FederationError as e:
            log.info("room directory query to %s failed: %s", server, e.status or "unreachable")
            if e.status is not None and 400 <= e.status < 500 and e.errcode:
                raise MatrixError(e.status, e.errcode, "The server refused the query") from None
            raise MatrixError(502, "M_UNKNOWN", "The server did not answer") from None
        return _checked(answer)


def _params(query: PublicRoomsQuery) -> dict[str, str]:
    params: dict[str, str] = {}
    if query.limit is not None:
        params["limit"] = str(query.limit)
    if query.since is not None:
        params["since"] = query.since
    if query.include_all_networks:
        params["include_all_networks"] = "true"
    if query.third_party_instance_id is not None:
        params["third_party_instance_id"] = query.third_party_instance_id
    return params


def _body(query: PublicRoomsQuery) -> dict[str, Any]:
    body: dict[str, Any] = {"include_all_networks": query.include_all_networks}
    flt: dict[str, Any] = {}
    if query.search_term is not None:
        flt["generic_search_term"] = query.search_term
    if query.room_types is not None:
        flt["room_types"] = query.room_types
    if flt:
        body["filter"] = flt
    if query.limit is not None:
        body["limit"] = query.limit
    if query.since is not None:
        body["since"] = query.since
    if query.third_party_instance_id is not None:
        body["third_party_instance_id"] = query.third_party_instance_id
    return body


def _checked(answer: Any) -> dict[str, Any]:
    """The remote answer with only well-formed rooms and pagination fields."""
    if not isinstance(answer, dict) or not isinstance(answer.get("chunk"), list):
        raise MatrixError(502, "M_UNKNOWN", "The server sent a malformed answer")
    chunk = [
        room
        for room in answer["chunk"]
        if isinstance(room, dict)
        and isinstance(room.get("room_id"), str)
        and isinstance(room.get("num_joined_members"), int)
    ]
    out: dict[str, Any] = {"chunk": chunk}
    for key in ("next_batch", "prev_batch"):
        if isinstance(answer.get(key), str):
            out[key] = answer[key]
    estimate = answer.get("total_room_count_estimate")
    if isinstance(estimate, int) and not isinstance(estimate, bool):
        out["total_room_count_estimate"] = estimate
    return out
