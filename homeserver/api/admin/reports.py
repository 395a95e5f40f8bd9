"""Reports: the client API's user report, and the admin listing of event, room and
user reports (/_synapse/admin/v1/event_reports and the same shape for rooms and users)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import (
    ADMIN_V1,
    query_count,
    query_dir,
    query_text,
    require_admin,
)
from homeserver.api.routes import client_routes
from homeserver.errors import not_found
from homeserver.http.bodies import json_body, req_str
from homeserver.http.shell import Handler, json_response
from homeserver.rooms.report_admin import ReportAdmin
from homeserver.rooms.reports import ReportService
from homeserver.rooms.store.reports_store import ReportQuery

MAX_PAGE = 1000
# URL segment -> (kind of report, key of the list in the answer)
LISTS = {
    "event_reports": ("event", "event_reports"),
    "room_reports": ("room", "room_reports"),
    "user_reports": ("user", "user_reports"),
}


def _report_id(request: web.Request) -> int:
    raw = request.match_info["reportId"]
    if not raw.isdigit() or len(raw) > 18:
        raise not_found("Report not found")
    return int(raw)


class ReportsApi:
    def __init__(self, auth: Authenticator, reports: ReportService, admin: ReportAdmin) -> None:
        self.auth = auth
        self.reports = reports
        self.admin = admin

    def routes(self) -> list[web.RouteDef]:
        out = [*client_routes("POST", "/users/{userId}/report", self.report_user)]
        for segment, (kind, key) in LISTS.items():
            out += [
                web.get(f"{ADMIN_V1}/{segment}", self._lister(kind, key)),
                web.get(f"{ADMIN_V1}/{segment}/{{reportId}}", self._getter(kind)),
                web.delete(f"{ADMIN_V1}/{segment}/{{reportId}}", self._deleter(kind)),
            ]
        return out

    async def report_user(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        body = await json_body(request)
        await self.reports.report_user(
            requester.user_id, request.match_info["userId"], req_str(body, "reason")
        )
        return json_response({})

    def _lister(self, kind: str, key: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            await require_admin(self.auth, request)
            query = ReportQuery(
                kind=kind,
                offset=query_count(request, "from", 0),
                limit=query_count(request, "limit", 100, MAX_PAGE),
                backwards=query_dir(request, "b"),
                reporter=query_text(request, "user_id"),
                room_id=query_text(request, "room_id"),
            )
            found, total = await self.admin.page(query)
            body: dict[str, object] = {key: found, "total": total}
            if found and query.offset + len(found) < total:
                body["next_token"] = query.offset + len(found)
            return json_response(body)

        return handler

    def _getter(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            await require_admin(self.auth, request)
            return json_response(await self.admin.get(kind, _report_id(request)))

        return handler

    def _deleter(self, kind: str) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            await require_admin(self.auth, request)
            await self.admin.delete(kind, _report_id(request))
            return json_response({})

        return handler
