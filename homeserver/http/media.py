"""HTTP pieces of the media endpoints shared by the client and federation APIs:
query parameters of downloads and thumbnails, and the file answer with its
safe-serving headers."""

from __future__ import annotations

from aiohttp import web

from homeserver.errors import invalid_param, missing_param
from homeserver.media.headers import serving_headers
from homeserver.media.service import DEFAULT_TIMEOUT_MS, Servable


def serve(media: Servable, filename: str | None = None) -> web.FileResponse:
    """The file with the safe-serving headers (``filename`` from the URL wins)."""
    return web.FileResponse(
        media.path, headers=serving_headers(media.content_type, filename or media.filename)
    )


def _query_int(request: web.Request, key: str, *, required: bool, default: int = 0) -> int:
    raw = request.query.get(key)
    if raw is None:
        if required:
            raise missing_param(f"'{key}' is required")
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid_param(f"'{key}' must be an integer") from None
    if value < 0:
        raise invalid_param(f"'{key}' must not be negative")
    return value


def query_bool(request: web.Request, key: str, default: bool) -> bool:
    raw = request.query.get(key)
    if raw is None:
        return default
    if raw not in ("true", "false"):
        raise invalid_param(f"'{key}' must be true or false")
    return raw == "true"


def thumbnail_params(request: web.Request) -> tuple[int, int, str, bool]:
    """``width``, ``height``, ``method`` and ``animated`` of a thumbnail request."""
    width = _query_int(request, "width", required=True)
    height = _query_int(request, "height", required=True)
    if width < 1 or height < 1:
        raise invalid_param("'width' and 'height' must be at least 1")
    method = request.query.get("method", "scale")
    if method not in ("crop", "scale"):
        raise invalid_param("'method' must be crop or scale")
    return width, height, method, query_bool(request, "animated", False)


def timeout_ms(request: web.Request) -> int:
    return _query_int(request, "timeout_ms", required=False, default=DEFAULT_TIMEOUT_MS)
