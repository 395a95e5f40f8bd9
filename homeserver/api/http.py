"""The HTTP shell shared by every API area: errors, CORS, request ids, JSON bodies.

Handlers raise ``MatrixError``; the error middleware turns it, and aiohttp's
own 404/405/413, into Matrix JSON. Any other exception is logged once with
the request id and answered as 500 ``M_UNKNOWN`` without internals.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from homeserver.errors import (
    MatrixError,
    bad_json,
    invalid_param,
    not_json,
    too_large,
    unrecognized,
)
from homeserver.net import client_ip as client_ip

log = logging.getLogger("myelin.http")

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def error_response(err: MatrixError) -> web.Response:
    return json_response(err.to_json(), status=err.status)


@web.middleware
async def cors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer preflight requests; add CORS headers to every response (spec: Web Browser Clients)."""
    if request.method == "OPTIONS":
        resp: web.StreamResponse = web.Response(status=200)
    else:
        resp = await handler(request)
    if not resp.prepared:
        resp.headers.update(CORS_HEADERS)
    return resp


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id.set(secrets.token_hex(6))
    try:
        if "\x00" in request.path:
            # No Matrix identifier holds NUL; refuse before any handler or query sees it.
            raise invalid_param("The request path must not contain NUL characters")
        return await handler(request)
    except MatrixError as e:
        resp = error_response(e)
        if e.status == 413:
            # The rest of the body is never read: do not keep the connection for reuse.
            resp.force_close()
        return resp
    except web.HTTPRequestEntityTooLarge:
        resp = error_response(too_large())
        resp.force_close()
        return resp
    except web.HTTPMethodNotAllowed:
        return error_response(unrecognized(405, "Unrecognized request: method not allowed"))
    except web.HTTPNotFound:
        return error_response(unrecognized(404))
    except web.HTTPException as e:
        if e.status >= 400:
            return error_response(MatrixError(e.status, "M_UNKNOWN", e.reason))
        raise
    except Exception:
        log.exception("request %s %s failed [%s]", request.method, request.path, request_id.get())
        return error_response(MatrixError(500, "M_UNKNOWN", "Internal server error"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def parse_json_bytes(raw: bytes) -> Any:
    """Parse a request body strictly: UTF-8, no NaN/Infinity, no lone surrogates.

    ``\\ud800``-style escapes that do not form a pair decode to strings that
    cannot be encoded as UTF-8 again (nor stored, nor answered), so they are
    refused here once rather than failing later inside a handler.
    """
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise not_json() from None
    if "\\u" in text and _has_lone_surrogate(value):
        raise not_json("Content contains an unpaired UTF-16 surrogate")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


async def read_body(request: web.Request, limit: int) -> bytes:
    """Read the body, refusing with 413 before reading when it is over ``limit``."""
    if request.content_length is not None and request.content_length > limit:
        raise too_large()
    chunks = []
    size = 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            raise too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, or a Matrix error (M_NOT_JSON / M_BAD_JSON)."""
    limit: int = request.app["max_json_body_bytes"]
    raw = await read_body(request, limit)
    if not raw.strip():
        if allow_empty:
            return {}
        raise not_json("Request body is empty; expected a JSON object")
    body = parse_json_bytes(raw)
    if not isinstance(body, dict):
        raise bad_json("Content must be a JSON object")
    return body


# --- small typed readers for JSON fields ------------------------------------


def opt_str(body: dict[str, Any], key: str) -> str | None:
    """A string field; NUL is refused (no identifier or name may hold it, and
    PostgreSQL cannot store it in TEXT)."""
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_json(f"'{key}' must be a string")
    if value is not None and "\x00" in value:
        raise invalid_param(f"'{key}' must not contain NUL characters")
    return value


def req_str(body: dict[str, Any], key: str) -> str:
    value = opt_str(body, key)
    if value is None:
        raise bad_json(f"'{key}' is required")
    return value


def opt_bool(body: dict[str, Any], key: str, default: bool) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise bad_json(f"'{key}' must be a boolean")
    return value


def opt_dict(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise bad_json(f"'{key}' must be an object")
    return value


def query_int(request: web.Request, key: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter clamped to [lo, hi]; M_INVALID_PARAM if not a number."""
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise MatrixError(400, "M_INVALID_PARAM", f"'{key}' must be an integer") from None
    return max(lo, min(hi, value))


CLIENT_PREFIXES = ("/_matrix/client/v3", "/_matrix/client/r0")


def client_routes(method: str, path: str, handler: Handler) -> list[web.RouteDef]:
    """The same handler under the v3 and legacy r0 prefixes of the client API."""
    return [web.route(method, prefix + path, handler) for prefix in CLIENT_PREFIXES]
