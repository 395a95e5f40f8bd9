"""Media upkeep for server admins, on Synapse's admin paths: quarantine a media id,
purge the remote media cache (the same operations as ``myelin media``)."""

from __future__ import annotations

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.api.admin.common import ADMIN_V1, require_admin
from homeserver.errors import invalid_param, missing_param, not_found
from homeserver.http.shell import json_response
from homeserver.media.service import MediaService


class MediaAdminApi:
    def __init__(self, auth: Authenticator, media: MediaService) -> None:
        self.auth = auth
        self.media = media

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(ADMIN_V1 + "/media/quarantine/{serverName}/{mediaId}", self.quarantine),
            web.post(ADMIN_V1 + "/purge_media_cache", self.purge_media_cache),
        ]

    async def quarantine(self, request: web.Request) -> web.Response:
        """Stop serving the media id anywhere (404 for local media we never had)."""
        await require_admin(self.auth, request)
        server_name = request.match_info["serverName"]
        media_id = request.match_info["mediaId"]
        if not await self.media.quarantine(server_name, media_id):
            raise not_found("Unknown media")
        return json_response({})

    async def purge_media_cache(self, request: web.Request) -> web.Response:
        """Delete cached remote media not read since ``before_ts`` (ms); local media stays."""
        await require_admin(self.auth, request)
        raw = request.query.get("before_ts")
        if raw is None:
            raise missing_param("Query parameter 'before_ts' is required")
        if not raw.isdigit() or len(raw) > 18:
            raise invalid_param("Query parameter 'before_ts' must be a timestamp in milliseconds")
        return json_response({"deleted": await self.media.purge_remote(int(raw))})
