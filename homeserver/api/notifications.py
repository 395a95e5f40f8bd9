"""Client API: GET /notifications (spec: "Push Notifications", "Listing notifications")."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.routes import client_routes
from homeserver.http.bodies import query_int
from homeserver.http.shell import json_response
from homeserver.push.notifications import MAX_NOTIFICATIONS_LIMIT, NotificationService


class NotificationsApi:
    def __init__(self, auth: Authenticator, notifications: NotificationService) -> None:
        self.auth = auth
        self.notifications = notifications

    def routes(self) -> list[web.RouteDef]:
        return client_routes("GET", "/notifications", self.list)

    async def list(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request)
        limit = query_int(request, "limit", 20, 1, MAX_NOTIFICATIONS_LIMIT)
        body = await self.notifications.notifications(
            requester.user_id, request.query.get("from"), limit, request.query.get("only")
        )
        return json_response(body)
