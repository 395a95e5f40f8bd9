"""The HTTP shell shared by the client and federation APIs: errors, CORS, request ids, responses.

Handlers raise ``MatrixError``; the error middleware turns it, and aiohttp's
own 404/405/413, into Matrix JSON. Any other exception is logged once with
the request id (given by the observe middleware, http/observe.py, which runs
first) and answered as 500 ``M_UNKNOWN`` without internals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from homeserver.errors import (
    MatrixError,
    invalid_param,
    too_large,
    unrecognized,
)
from homeserver.logs import request_id

log = logging.getLogger("myelin.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, HEAD, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}


def encode_json(body: Any) -> bytes:
    """Compact UTF-8 JSON for a response, by orjson (several times faster than the
    standard library on big /sync bodies). Canonical JSON is not needed here: only
    signatures and hashes need it, and those have their own encoder. The standard
    library is the fallback for what orjson refuses (integers past 64 bits, which
    old room versions' content may hold). An object with ``json_bytes`` (JSON encoded
    beforehand, such as a /sync's state events) goes in as it is."""
    try:
        return orjson.dumps(body, default=_embedded, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(
            body, ensure_ascii=False, separators=(",", ":"), default=_embedded_decoded
        ).encode()


def _embedded(obj: Any) -> orjson.Fragment:
    data = getattr(obj, "json_bytes", None)
    if isinstance(data, bytes):
        return orjson.Fragment(data)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def _embedded_decoded(obj: Any) -> Any:
    data = getattr(obj, "json_bytes", None)
    if isinstance(data, bytes):
        return json.loads(data)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode_json(body), status=status, content_type="application/json")


def error_response(err: MatrixError) -> web.Response:
    resp = json_response(err.to_json(), status=err.status)
    retry_ms = err.extra.get("retry_after_ms")
    if err.status == 429 and isinstance(retry_ms, int):
        # Spec v1.10+: the Retry-After header (whole seconds) beside the body's field.
        resp.headers["Retry-After"] = str(max(1, -(-retry_ms // 1000)))
    return resp


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
