"""Media over federation (server-server "Content Repository").

Served: ``GET /_matrix/federation/v1/media/download/{mediaId}`` and
``/thumbnail/{mediaId}``, our own media only, answered as ``multipart/mixed``:
a JSON metadata part (``{}``) and the bytes with their type and disposition.

Fetched: ``RemoteMedia`` is the media service's source of remote bytes. It
asks the authenticated endpoint first; when the origin answers
``404 M_UNRECOGNIZED`` (a server older than v1.11) it falls back to the
deprecated ``/_matrix/media/v3/download`` with ``allow_remote=false``, as the
spec requires. A ``Location`` part is followed (not cached, per the spec).
Every byte goes through the service's ``ContentWriter``, which enforces the
size limit while the answer streams in.
"""

from __future__ import annotations

import asyncio
import json
import secrets

import aiohttp
from aiohttp import web

from federation.auth import authenticated
from federation.client import FederationClient, encode_path
from federation.errors import FederationError
from homeserver.errors import MatrixError, not_found
from homeserver.http.media import thumbnail_params
from homeserver.http.media import timeout_ms as timeout_param
from homeserver.media.content_store import ContentWriter
from homeserver.media.headers import filename_from_disposition, serving_headers
from homeserver.media.remote import RemoteMeta
from homeserver.media.service import MediaService, Servable

CHUNK = 64 * 1024
_METADATA_LIMIT = 64 * 1024


class FederationMediaApi:
    """Our media, for other servers."""

    def __init__(self, media: MediaService) -> None:
        self.media = media

    def routes(self) -> list[web.RouteDef]:
        base = "/_matrix/federation/v1/media"
        return [
            web.get(base + "/download/{mediaId}", authenticated(self.download)),
            web.get(base + "/thumbnail/{mediaId}", authenticated(self.thumbnail)),
        ]

    async def download(self, request: web.Request, origin: str) -> web.StreamResponse:
        found = await self.media.local_download(
            request.match_info["mediaId"], timeout_param(request)
        )
        return await send_multipart(request, found)

    async def thumbnail(self, request: web.Request, origin: str) -> web.StreamResponse:
        width, height, method, animated = thumbnail_params(request)
        found = await self.media.thumbnail(
            self.media.server_name,
            request.match_info["mediaId"],
            width,
            height,
            method,
            animated,
            allow_remote=False,
            timeout_ms=timeout_param(request),
        )
        return await send_multipart(request, found)


async def send_multipart(request: web.Request, found: Servable) -> web.StreamResponse:
    """The two-part answer: ``{}`` metadata, then the file, streamed from disk."""
    boundary = secrets.token_hex(16)
    resp = web.StreamResponse(headers={"Content-Type": f"multipart/mixed; boundary={boundary}"})
    await resp.prepare(request)
    part_headers = serving_headers(found.content_type, found.filename)
    head = (
        f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n"
        f"--{boundary}\r\n"
        f"Content-Type: {part_headers['Content-Type']}\r\n"
        f"Content-Disposition: {part_headers['Content-Disposition']}\r\n\r\n"
    )
    await resp.write(head.encode("utf-8"))
    with open(found.path, "rb") as f:  # noqa: ASYNC230 - chunks are read by a thread below
        while chunk := await asyncio.to_thread(f.read, CHUNK):
            await resp.write(chunk)
    await resp.write(f"\r\n--{boundary}--\r\n".encode())
    await resp.write_eof()
    return resp


class RemoteMedia:
    """The media service's source of remote media, over federation."""

    def __init__(self, client: FederationClient) -> None:
        self.client = client

    async def download(
        self, server_name: str, media_id: str, writer: ContentWriter, timeout_ms: int
    ) -> RemoteMeta:
        timeout_s = max(timeout_ms, 1000) / 1000 + 30.0
        try:
            try:
                return await self._authenticated(
                    server_name, media_id, writer, timeout_ms, timeout_s
                )
            except FederationError as e:
                if not falls_back(e):
                    raise
            return await self._legacy(server_name, media_id, writer, timeout_ms, timeout_s)
        except FederationError as e:
            raise _client_error(e) from None

    async def _authenticated(
        self, server_name: str, media_id: str, writer: ContentWriter, wait_ms: int, timeout_s: float
    ) -> RemoteMeta:
        path = encode_path("_matrix", "federation", "v1", "media", "download", media_id)
        async with self.client.stream(
            server_name, path, {"timeout_ms": str(wait_ms)}, timeout_s=timeout_s
        ) as resp:
            if resp.content_type != "multipart/mixed":
                raise FederationError(server_name, "media answer is not multipart/mixed")
            reader = aiohttp.MultipartReader(resp.headers, resp.content)
            meta_part = await reader.next()
            if not isinstance(meta_part, aiohttp.BodyPartReader):
                raise FederationError(server_name, "media answer has no metadata part")
            raw_meta = await _read_limited(meta_part, _METADATA_LIMIT, server_name)
            try:
                if not isinstance(json.loads(raw_meta or b"{}"), dict):
                    raise ValueError
            except ValueError:
                raise FederationError(server_name, "media metadata is not a JSON object") from None
            part = await reader.next()
            if not isinstance(part, aiohttp.BodyPartReader):
                raise FederationError(server_name, "media answer has no content part")
            location = part.headers.get("Location")
            if location is not None:
                return await self._follow(server_name, location, writer, timeout_s)
            while chunk := await part.read_chunk(CHUNK):
                await writer.write(chunk)
            return RemoteMeta(
                part.headers.get("Content-Type"),
                filename_from_disposition(part.headers.get("Content-Disposition")),
            )

    async def _follow(
        self, server_name: str, url: str, writer: ContentWriter, timeout_s: float
    ) -> RemoteMeta:
        async with self.client.stream_url(server_name, url, timeout_s=timeout_s) as resp:
            return await _copy_body(resp, writer)

    async def _legacy(
        self, server_name: str, media_id: str, writer: ContentWriter, wait_ms: int, timeout_s: float
    ) -> RemoteMeta:
        path = encode_path("_matrix", "media", "v3", "download", server_name, media_id)
        query = {"allow_remote": "false", "timeout_ms": str(wait_ms)}
        async with self.client.stream(server_name, path, query, timeout_s=timeout_s) as resp:
            return await _copy_body(resp, writer)


async def _copy_body(resp: aiohttp.ClientResponse, writer: ContentWriter) -> RemoteMeta:
    async for chunk in resp.content.iter_chunked(CHUNK):
        await writer.write(chunk)
    return RemoteMeta(
        resp.headers.get("Content-Type"),
        filename_from_disposition(resp.headers.get("Content-Disposition")),
    )


async def _read_limited(part: aiohttp.BodyPartReader, limit: int, server_name: str) -> bytes:
    data = b""
    while chunk := await part.read_chunk(CHUNK):
        data += chunk
        if len(data) > limit:
            raise FederationError(server_name, "media metadata too large")
    return data


def falls_back(e: FederationError) -> bool:
    """Does this answer mean "no authenticated media endpoint here" (an older server)?
    The spec names ``404 M_UNRECOGNIZED``; servers without Matrix errors for unknown
    paths answer a bare 404 (or 400/405), which means the same."""
    return e.status in (400, 404, 405) and e.errcode in (None, "M_UNRECOGNIZED")


def _client_error(e: FederationError) -> MatrixError:
    """What the client sees when the origin could not give us the media."""
    if e.status == 404:
        return not_found("Media not found on its server")
    if e.errcode == "M_TOO_LARGE":
        return MatrixError(502, "M_TOO_LARGE", "The remote file is too large")
    if e.status == 504 and e.errcode == "M_NOT_YET_UPLOADED":
        return MatrixError(504, "M_NOT_YET_UPLOADED", "The media has not been uploaded yet")
    return MatrixError(502, "M_UNKNOWN", "Could not fetch the media from its server")
