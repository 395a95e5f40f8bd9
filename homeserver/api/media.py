"""Client API: the content repository (client-server "Content repository").

Uploads stay under ``/_matrix/media/v3`` (and ``/v1/create``); downloads are
the authenticated ``/_matrix/client/v1/media/*``. The deprecated
unauthenticated ``/_matrix/media/v3|r0/download|thumbnail`` serve only media
stored before the configured freeze. Upload bodies are streamed from the
socket to the content store, never read whole.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from homeserver.accounts.auth import Authenticator
from homeserver.errors import missing_param
from homeserver.http.media import query_bool, serve, thumbnail_params, timeout_ms
from homeserver.http.shell import json_response
from homeserver.media.service import MediaService

if TYPE_CHECKING:  # built only when URL previews are on (html.parser and the previewer)
    from homeserver.media.preview import UrlPreviewer

AUTHED = "/_matrix/client/v1/media"
LEGACY = ("/_matrix/media/v3", "/_matrix/media/r0")
CHUNK = 64 * 1024


class MediaApi:
    def __init__(
        self, media: MediaService, auth: Authenticator, previewer: UrlPreviewer | None = None
    ) -> None:
        self.media = media
        self.auth = auth
        self.previewer = previewer

    def routes(self) -> list[web.RouteDef]:
        routes = [
            web.post("/_matrix/media/v1/create", self.create),
            web.get(AUTHED + "/config", self.config),
            web.get(AUTHED + "/download/{serverName}/{mediaId}", self.download),
            web.get(AUTHED + "/download/{serverName}/{mediaId}/{fileName}", self.download),
            web.get(AUTHED + "/thumbnail/{serverName}/{mediaId}", self.thumbnail),
        ]
        if self.previewer is not None:  # off: the routes do not exist (404 M_UNRECOGNIZED)
            routes.append(web.get(AUTHED + "/preview_url", self.preview_url))
            routes += [web.get(prefix + "/preview_url", self.preview_url) for prefix in LEGACY]
        for prefix in LEGACY:
            routes += [
                web.post(prefix + "/upload", self.upload),
                web.put(prefix + "/upload/{serverName}/{mediaId}", self.upload_to),
                web.get(prefix + "/config", self.config),
                web.get(prefix + "/download/{serverName}/{mediaId}", self.legacy_download),
                web.get(
                    prefix + "/download/{serverName}/{mediaId}/{fileName}", self.legacy_download
                ),
                web.get(prefix + "/thumbnail/{serverName}/{mediaId}", self.legacy_thumbnail),
            ]
        return routes

    async def upload(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        uri = await self.media.upload(
            requester.user_id,
            request.headers.get("Content-Type"),
            request.query.get("filename"),
            request.content.iter_chunked(CHUNK),
            request.content_length,
        )
        return json_response({"content_uri": uri})

    async def create(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        uri, expires = await self.media.create(requester.user_id)
        return json_response({"content_uri": uri, "unused_expires_at": expires})

    async def upload_to(self, request: web.Request) -> web.Response:
        requester = await self.auth.requester(request, allow_guest=True)
        await self.media.upload_to(
            requester.user_id,
            request.match_info["serverName"],
            request.match_info["mediaId"],
            request.headers.get("Content-Type"),
            request.query.get("filename"),
            request.content.iter_chunked(CHUNK),
            request.content_length,
        )
        return json_response({})

    async def config(self, request: web.Request) -> web.Response:
        await self.auth.requester(request, allow_guest=True)
        return json_response(self.media.upload_config())

    async def download(self, request: web.Request) -> web.StreamResponse:
        await self.auth.requester(request, allow_guest=True)
        found = await self.media.download(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            timeout_ms=timeout_ms(request),
        )
        return serve(found, request.match_info.get("fileName"))

    async def thumbnail(self, request: web.Request) -> web.StreamResponse:
        await self.auth.requester(request, allow_guest=True)
        width, height, method, animated = thumbnail_params(request)
        found = await self.media.thumbnail(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            width,
            height,
            method,
            animated,
            timeout_ms=timeout_ms(request),
        )
        return serve(found)

    async def preview_url(self, request: web.Request) -> web.Response:
        await self.auth.requester(request)
        assert self.previewer is not None
        url = request.query.get("url")
        if not url:
            raise missing_param("'url' is required")
        return json_response(await self.previewer.preview(url))

    async def legacy_download(self, request: web.Request) -> web.StreamResponse:
        """Deprecated and unauthenticated: frozen media only (spec: v1.11 "freeze")."""
        found = await self.media.download(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            allow_remote=query_bool(request, "allow_remote", True),
            timeout_ms=timeout_ms(request),
            legacy=True,
        )
        return serve(found, request.match_info.get("fileName"))

    async def legacy_thumbnail(self, request: web.Request) -> web.StreamResponse:
        width, height, method, animated = thumbnail_params(request)
        found = await self.media.thumbnail(
            request.match_info["serverName"],
            request.match_info["mediaId"],
            width,
            height,
            method,
            animated,
            allow_remote=query_bool(request, "allow_remote", True),
            timeout_ms=timeout_ms(request),
            legacy=True,
        )
        return serve(found)
