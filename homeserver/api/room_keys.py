"""Client API: /room_keys/* (spec: "Server-side key backups")."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.e2ee.backup import KeyBackupService, parse_key_data
from homeserver.e2ee.backup_store import BackupKey
from homeserver.errors import bad_json, not_found
from homeserver.http.bodies import json_body
from homeserver.http.shell import json_response


def _parse_sessions(room_id: str, sessions: Any) -> list[BackupKey]:
    if not isinstance(sessions, dict):
        raise bad_json("'sessions' must be an object")
    return [parse_key_data(room_id, sid, data) for sid, data in sessions.items()]


def _parse_rooms(body: dict[str, Any]) -> list[BackupKey]:
    rooms = body.get("rooms")
    if not isinstance(rooms, dict):
        raise bad_json("'rooms' must be an object")
    keys: list[BackupKey] = []
    for room_id, room in rooms.items():
        if not isinstance(room, dict):
            raise bad_json("each room must be an object with 'sessions'")
        keys += _parse_sessions(room_id, room.get("sessions"))
    return keys


class RoomKeysApi:
    def __init__(self, backup: KeyBackupService, auth: Authenticator) -> None:
        self.backup = backup
        self.auth = auth

    def routes(self) -> list[web.RouteDef]:
        keys = "/room_keys/keys"
        room = keys + "/{roomId}"
        session = room + "/{sessionId}"
        return [
            *client_routes("POST", "/room_keys/version", self.create_version),
            *client_routes("GET", "/room_keys/version", self.get_version),
            *client_routes("GET", "/room_keys/version/{version}", self.get_version),
            *client_routes("PUT", "/room_keys/version/{version}", self.put_version),
            *client_routes("DELETE", "/room_keys/version/{version}", self.delete_version),
            *[r for path in (keys, room, session) for r in self._key_routes(path)],
        ]

    def _key_routes(self, path: str) -> list[web.RouteDef]:
        return [
            *client_routes("GET", path, self.get_keys),
            *client_routes("PUT", path, self.put_keys),
            *client_routes("DELETE", path, self.delete_keys),
        ]

    async def create_version(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        version = await self.backup.create_version(
            requester.user_id, body.get("algorithm"), body.get("auth_data")
        )
        return json_response({"version": version})

    async def get_version(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        info = await self.backup.version_info(requester.user_id, request.match_info.get("version"))
        return json_response(info)

    async def put_version(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.backup.update_version(
            requester.user_id,
            request.match_info["version"],
            body.get("algorithm"),
            body.get("auth_data"),
            body.get("version"),
        )
        return json_response({})

    async def delete_version(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        await self.backup.delete_version(requester.user_id, request.match_info["version"])
        return json_response({})

    async def put_keys(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        room_id = request.match_info.get("roomId")
        session_id = request.match_info.get("sessionId")
        if session_id is not None and room_id is not None:
            keys = [parse_key_data(room_id, session_id, body)]
        elif room_id is not None:
            keys = _parse_sessions(room_id, body.get("sessions"))
        else:
            keys = _parse_rooms(body)
        answer = await self.backup.put_keys(requester.user_id, request.query.get("version"), keys)
        return json_response(answer)

    async def get_keys(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        room_id = request.match_info.get("roomId")
        session_id = request.match_info.get("sessionId")
        keys = await self.backup.get_keys(
            requester.user_id, request.query.get("version"), room_id, session_id
        )
        if session_id is not None:
            if not keys:
                raise not_found("No room_keys found")
            return json_response(keys[0].to_json())
        sessions: dict[str, dict[str, Any]] = {}
        for k in keys:
            sessions.setdefault(k.room_id, {})[k.session_id] = k.to_json()
        if room_id is not None:
            return json_response({"sessions": sessions.get(room_id, {})})
        return json_response({"rooms": {r: {"sessions": s} for r, s in sessions.items()}})

    async def delete_keys(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        answer = await self.backup.delete_keys(
            requester.user_id,
            request.query.get("version"),
            request.match_info.get("roomId"),
            request.match_info.get("sessionId"),
        )
        return json_response(answer)
