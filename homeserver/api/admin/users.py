"""Admin API for accounts: /_synapse/admin/v2/users, deactivate, reset_password,
whois (also the client API's /admin/whois), devices."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from homeserver.accounts.admin import UserAdmin, parse_user_changes
from homeserver.accounts.admin_store import ORDER_COLUMNS, UserQuery
from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import (
    ADMIN_V1,
    ADMIN_V2,
    query_count,
    query_dir,
    query_flag,
    query_text,
    require_admin,
)
from homeserver.api.routes import client_routes
from homeserver.errors import forbidden, invalid_param
from homeserver.http.bodies import json_body, opt_bool, req_str
from homeserver.http.shell import json_response

MAX_PAGE = 1000


# user id -> rooms the user is joined to (the rooms area answers).
JoinedRooms = Callable[[str], Awaitable[list[str]]]


class UserAdminApi:
    def __init__(self, auth: Authenticator, users: UserAdmin, joined: JoinedRooms) -> None:
        self.auth = auth
        self.users = users
        self.joined = joined

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get(ADMIN_V2 + "/users", self.list_users),
            web.get(ADMIN_V2 + "/users/{userId}", self.get_user),
            web.put(ADMIN_V2 + "/users/{userId}", self.put_user),
            web.get(ADMIN_V2 + "/users/{userId}/devices", self.devices),
            web.get(ADMIN_V2 + "/users/{userId}/devices/{deviceId}", self.device),
            web.delete(ADMIN_V2 + "/users/{userId}/devices/{deviceId}", self.delete_device),
            web.post(ADMIN_V2 + "/users/{userId}/delete_devices", self.delete_devices),
            web.get(ADMIN_V1 + "/users/{userId}/admin", self.get_admin),
            web.put(ADMIN_V1 + "/users/{userId}/admin", self.put_admin),
            web.get(ADMIN_V1 + "/users/{userId}/joined_rooms", self.joined_rooms),
            web.post(ADMIN_V1 + "/deactivate/{userId}", self.deactivate),
            web.post(ADMIN_V1 + "/reset_password/{userId}", self.reset_password),
            web.get(ADMIN_V1 + "/whois/{userId}", self.admin_whois),
            *client_routes("GET", "/admin/whois/{userId}", self.client_whois),
        ]

    async def list_users(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        order_by = request.query.get("order_by", "name")
        if order_by not in ORDER_COLUMNS:
            raise invalid_param(f"Unknown order_by {order_by!r}")
        query = UserQuery(
            offset=query_count(request, "from", 0),
            limit=query_count(request, "limit", 100, MAX_PAGE),
            name=query_text(request, "name"),
            user_id=query_text(request, "user_id"),
            guests=bool(query_flag(request, "guests", True)),
            deactivated=bool(query_flag(request, "deactivated", False)),
            admins=query_flag(request, "admins", None),
            order_by=order_by,
            backwards=query_dir(request),
        )
        users, total = await self.users.list_users(query)
        body: dict[str, object] = {"users": users, "total": total}
        if query.offset + len(users) < total and users:
            body["next_token"] = str(query.offset + len(users))
        return json_response(body)

    async def get_user(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response(await self.users.get_user(request.match_info["userId"]))

    async def put_user(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        changes = parse_user_changes(await json_body(request))
        user, created = await self.users.upsert_user(request.match_info["userId"], changes)
        return json_response(user, status=201 if created else 200)

    async def devices(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        devices = await self.users.devices(request.match_info["userId"])
        return json_response({"devices": devices, "total": len(devices)})

    async def device(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        m = request.match_info
        return json_response(await self.users.device(m["userId"], m["deviceId"]))

    async def delete_device(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        m = request.match_info
        await self.users.delete_devices(m["userId"], [m["deviceId"]])
        return json_response({})

    async def delete_devices(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        devices = (await json_body(request)).get("devices")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise invalid_param("'devices' must be a list of device ids")
        await self.users.delete_devices(request.match_info["userId"], devices)
        return json_response({})

    async def get_admin(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response({"admin": await self.users.is_admin(request.match_info["userId"])})

    async def put_admin(self, request: web.Request) -> web.Response:
        requester = await require_admin(self.auth, request)
        body = await json_body(request)
        if not isinstance(body.get("admin"), bool):
            raise invalid_param("'admin' must be a boolean")
        user_id = request.match_info["userId"]
        if user_id == requester.user_id and not body["admin"]:
            raise invalid_param("You may not demote yourself")
        await self.users.set_admin(user_id, body["admin"])
        return json_response({})

    async def joined_rooms(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        user_id = request.match_info["userId"]
        await self.users.get_user(user_id)  # 400 for a bad or remote id, 404 if unknown
        rooms = await self.joined(user_id)
        return json_response({"joined_rooms": rooms, "total": len(rooms)})

    async def deactivate(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        body = await json_body(request, allow_empty=True)
        await self.users.deactivate(request.match_info["userId"], opt_bool(body, "erase", False))
        return json_response({"id_server_unbind_result": "success"})

    async def reset_password(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        body = await json_body(request)
        password = req_str(body, "new_password")
        if not password:
            raise invalid_param("new_password must not be empty")
        await self.users.set_password(
            request.match_info["userId"], password, opt_bool(body, "logout_devices", True)
        )
        return json_response({})

    async def admin_whois(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        return json_response(await self.users.whois(request.match_info["userId"]))

    async def client_whois(self, request: web.Request) -> web.Response:
        """Spec "Server administration": admins may ask about anyone, users about themselves."""
        requester = await self.auth.requester(request)
        user_id = request.match_info["userId"]
        if user_id != requester.user_id and not requester.is_admin:
            raise forbidden("You may only look up your own sessions")
        return json_response(await self.users.whois(user_id))
