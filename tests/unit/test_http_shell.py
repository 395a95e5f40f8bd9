"""The HTTP shell's middlewares on a real aiohttp app: a fault is a 500 M_UNKNOWN, logged once."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest
from aiohttp import web

from homeserver.errors import MatrixError
from homeserver.http.bodies import parse_json_bytes
from homeserver.http.observe import observe_middleware
from homeserver.http.shell import cors_middleware, encode_json, error_middleware
from homeserver.metrics import Metrics

SECRET_DETAIL = "db password is hunter2 at /srv/secret/path"


async def _boom(request: web.Request) -> web.Response:
    raise RuntimeError(SECRET_DETAIL)


async def test_fault_answers_500_without_internals(caplog: pytest.LogCaptureFixture) -> None:
    # As app.py builds it: the observe middleware first gives the request its id.
    app = web.Application(
        middlewares=[observe_middleware(Metrics(), "client"), cors_middleware, error_middleware]
    )
    app.router.add_get("/boom", _boom)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with caplog.at_level(logging.ERROR, logger="myelin.http"):
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{port}/boom") as resp,
            ):
                text = await resp.text()
                status = resp.status
                headers = resp.headers
    finally:
        await runner.cleanup()
    assert status == 500
    assert headers["Content-Type"].startswith("application/json")
    assert headers["Access-Control-Allow-Origin"] == "*"
    body = json.loads(text)
    assert body == {"errcode": "M_UNKNOWN", "error": "Internal server error"}
    for leak in ("hunter2", "RuntimeError", "Traceback", "/srv/secret"):
        assert leak not in text
    # Logged exactly once, with the method, path and a request id, and the traceback.
    records = [r for r in caplog.records if r.name == "myelin.http"]
    assert len(records) == 1
    message = records[0].getMessage()
    assert "GET /boom failed [" in message
    request_id = message.rsplit("[", 1)[1].rstrip("]")
    assert len(request_id) == 12 and request_id != "-"
    assert records[0].exc_info is not None


@pytest.mark.parametrize(
    "raw",
    [b"{", b"\xff", b'{"x": Infinity}', b'{"x": -NaN}', b'["\\udc00"]', b'{"\\ud800": 1}'],
)
def test_parse_json_bytes_refuses(raw: bytes) -> None:
    with pytest.raises(MatrixError) as e:
        parse_json_bytes(raw)
    assert (e.value.status, e.value.errcode) == (400, "M_NOT_JSON")


def test_parse_json_bytes_accepts() -> None:
    assert parse_json_bytes(b'{"a": ["\\ud83d\\ude00", "\\u00e9"]}') == {"a": ["😀", "é"]}


def test_response_json_is_compact_utf8_and_falls_back_for_what_orjson_refuses() -> None:
    assert encode_json({"body": "é\u2028", "n": None}) == '{"body":"é\u2028","n":null}'.encode()
    # Integers past 64 bits (old room versions allow them in content) and non-string keys.
    assert json.loads(encode_json({"big": 2**70, 3: True})) == {"big": 2**70, "3": True}


class _Encoded:
    """JSON encoded beforehand (as ``homeserver.rooms.client_json.Encoded``)."""

    def __init__(self, json_bytes: bytes) -> None:
        self.json_bytes = json_bytes


def test_pre_encoded_json_goes_in_as_is_on_both_paths() -> None:
    state = [_Encoded(b'{"type":"m.room.member","content":{"membership":"join"}}')]
    assert json.loads(encode_json({"events": state})) == {
        "events": [{"type": "m.room.member", "content": {"membership": "join"}}]
    }
    # The standard-library path (an integer orjson refuses elsewhere in the body).
    assert json.loads(encode_json({"events": state, "big": 2**70})) == {
        "events": [{"type": "m.room.member", "content": {"membership": "join"}}],
        "big": 2**70,
    }
    with pytest.raises(TypeError):
        encode_json({"x": object()})
