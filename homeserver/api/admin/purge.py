"""Admin API: purging a room's history (Synapse's purge_history and its status)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import ADMIN_V1, require_admin
from homeserver.errors import invalid_param
from homeserver.http.bodies import json_body, opt_bool, opt_str
from homeserver.http.shell import json_response
from homeserver.rooms.admin import check_room_id
from homeserver.rooms.purge import HistoryPurger


class PurgeAdminApi:
    def __init__(self, auth: Authenticator, purger: HistoryPurger) -> None:
        self.auth = auth
        self.purger = purger

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(ADMIN_V1 + "/purge_history/{roomId}", self.purge_history),
            web.post(ADMIN_V1 + "/purge_history/{roomId}/{eventId}", self.purge_history),
            web.get(ADMIN_V1 + "/purge_history_status/{purgeId}", self.status),
        ]

    async def purge_history(self, request: web.Request) -> web.Response:
        """Start purging history before an event or a time; the purge runs in the background."""
        await require_admin(self.auth, request)
        room_id = check_room_id(request.match_info["roomId"])
        body = await json_body(request, allow_empty=True)
        delete_local = opt_bool(body, "delete_local_events", False)
        event_id = request.match_info.get("eventId") or opt_str(body, "purge_up_to_event_id")
        before_ts = body.get("purge_up_to_ts")
        if before_ts is not None and (
            isinstance(before_ts, bool) or not isinstance(before_ts, int) or before_ts < 0
        ):
            raise invalid_param("purge_up_to_ts must be a non-negative integer (ms)")
        purge_id = await self.purger.start(
            room_id, event_id=event_id, before_ts=before_ts, delete_local=delete_local
        )
        return json_response({"purge_id": purge_id})

    async def status(self, request: web.Request) -> web.Response:
        await require_admin(self.auth, request)
        found = await self.purger.status(request.match_info["purgeId"])
        body = {"status": found.status}
        if found.status == "failed":
            body["error"] = found.error
        return json_response(body)
