"""Every error the HTTP shell answers: Matrix-shaped JSON with the spec's status and errcode."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api

LOGIN = "/_matrix/client/v3/login"


def assert_matrix_error(body: Any, errcode: str) -> None:
    assert isinstance(body, dict), body
    assert body["errcode"] == errcode
    assert isinstance(body["error"], str) and body["error"]


async def test_not_json(api: Api) -> None:
    alice = await api.register("alice")
    for raw in (b"{not json", b"", b"   ", b"\xff\xfe{}", b'{"a": NaN}', b'{"a": "\\ud800"}'):
        r = await api.post("/login", data=raw, headers={"Content-Type": "application/json"})
        assert r.status == 400, raw
        assert_matrix_error(r.body, "M_NOT_JSON")
    # Same on an authenticated endpoint.
    r = await api.put(
        f"/profile/{alice.user_id}/displayname", data=b"[1,", token=alice.access_token
    )
    assert r.status == 400
    assert_matrix_error(r.body, "M_NOT_JSON")
    # A valid surrogate pair is fine.
    r = await api.put(
        f"/profile/{alice.user_id}/displayname",
        data=b'{"displayname": "\\ud83d\\ude00"}',
        token=alice.access_token,
    )
    assert r.status == 200
    assert (await api.get(f"/profile/{alice.user_id}/displayname")).body == {"displayname": "😀"}


async def test_bad_json(api: Api) -> None:
    alice = await api.register("alice")
    cases: list[tuple[str, str, Any]] = [
        ("POST", "/login", [1, 2]),
        ("POST", "/login", "a string"),
        ("POST", "/login", {"type": 5}),
        ("POST", "/login", {"type": "m.login.password", "user": "alice", "password": None}),
        ("POST", "/register", {"username": "x", "inhibit_login": "yes"}),
        ("PUT", f"/profile/{alice.user_id}/displayname", [{"displayname": "x"}]),
        ("POST", "/account/password", {"new_password": ["x"]}),
    ]
    for method, path, payload in cases:
        r = await api.request(method, path, payload, token=alice.access_token)
        assert r.status == 400, (path, payload, r.body)
        assert_matrix_error(r.body, "M_BAD_JSON")
    # Nothing changed.
    assert (await api.get(f"/profile/{alice.user_id}")).body == {"displayname": "alice"}
    assert (await api.login("alice", alice.password)).status == 200


async def test_missing_and_unknown_token(api: Api) -> None:
    for path in ("/account/whoami", "/devices", "/capabilities"):
        r = await api.get(path)
        assert r.status == 401
        assert_matrix_error(r.body, "M_MISSING_TOKEN")
        r = await api.get(path, token="myl_forged")
        assert r.status == 401
        assert_matrix_error(r.body, "M_UNKNOWN_TOKEN")


async def test_forbidden(api: Api) -> None:
    await api.register("alice")
    r = await api.login("alice", "not the password")
    assert r.status == 403
    assert_matrix_error(r.body, "M_FORBIDDEN")


async def test_unrecognized_endpoint_and_method(api: Api) -> None:
    for path in (
        "/_matrix/client/v3/no_such_thing",
        "/_matrix/client/v3/account/whoami/extra",
        "/_matrix/nothing",
        "/",
    ):
        r = await api.get(path)
        assert r.status == 404, path
        assert_matrix_error(r.body, "M_UNRECOGNIZED")
    for method, path in (
        ("DELETE", "/_matrix/client/versions"),
        ("PUT", "/login"),
        ("GET", "/logout"),
        ("POST", "/account/whoami"),
    ):
        r = await api.request(method, path)
        assert r.status == 405, (method, path)
        assert_matrix_error(r.body, "M_UNRECOGNIZED")


async def test_nul_in_path_is_refused(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.get("/profile/@a%00b:localhost")
    assert r.status == 400
    assert_matrix_error(r.body, "M_INVALID_PARAM")
    r = await api.get("/devices/AB%00CD", token=alice.access_token)
    assert r.status == 400


async def _raw_exchange(
    server: RunningServer, head: str, first_chunk: bytes
) -> tuple[int, dict[str, str], bytes]:
    """Send headers and a small part of a body, then read the answer without sending more."""
    port = server.client_port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.encode() + first_chunk)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), timeout=5)
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while True:
            line = (await asyncio.wait_for(reader.readline(), timeout=5)).decode().strip()
            if not line:
                break
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), timeout=5)
        return status, headers, body
    finally:
        writer.close()


async def test_too_large_refused_before_reading(make_server: ServerFactory) -> None:
    server = await make_server(limits={"max_json_body_bytes": 65536})
    # A Content-Length over the limit: answered at once although the body never comes.
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * 1024 * 1024}\r\n\r\n"
    )
    status, headers, body = await _raw_exchange(server, head, b'{"type": "m.login.password"')
    assert status == 413
    assert_matrix_error(json.loads(body), "M_TOO_LARGE")
    assert headers.get("connection", "").lower() == "close"
    assert headers["access-control-allow-origin"] == "*"

    # Chunked, no length: refused as soon as more than the limit has arrived.
    head = (
        f"POST {LOGIN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b" " * 70000
    status, _, body = await _raw_exchange(server, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))
    assert status == 413
    assert_matrix_error(json.loads(body), "M_TOO_LARGE")

    # A body just under the limit is read (and judged on its content).
    async with Api(server.client_url) as api:
        r = await api.post("/login", data=b" " * 60000 + b"[]")
        assert r.status == 400 and r.errcode == "M_BAD_JSON"
        r = await api.post("/login", data=b" " * 70000 + b"{}")
        assert r.status == 413
        assert_matrix_error(r.body, "M_TOO_LARGE")


async def test_rate_limited(make_server: ServerFactory) -> None:
    server = await make_server(
        rate_limits={
            "enabled": True,
            "login": {"failed_attempts": {"per_second": 0.01, "burst_count": 2}},
            "registration": {"per_second": 0.01, "burst_count": 1},
        }
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        statuses = []
        for _ in range(3):
            r = await api.login("alice", "wrong")
            statuses.append(r.status)
        assert statuses == [403, 403, 429]
        assert_matrix_error(r.body, "M_LIMIT_EXCEEDED")
        assert isinstance(r.body["retry_after_ms"], int)
        assert 1000 <= r.body["retry_after_ms"] <= 100_000
        # Even the right password is refused while limited.
        r = await api.login("alice", alice.password)
        assert r.status == 429
        # Registration has its own bucket (one already used above).
        r = await api.post(
            "/register", {"username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}}
        )
        assert r.status == 429
        assert_matrix_error(r.body, "M_LIMIT_EXCEEDED")
        # Authenticated, non-limited endpoints still answer.
        assert (await api.get("/account/whoami", token=alice.access_token)).status == 200


async def test_rate_limits_can_be_disabled(make_server: ServerFactory) -> None:
    server = await make_server(
        rate_limits={
            "enabled": False,
            "login": {"failed_attempts": {"per_second": 0.01, "burst_count": 1}},
        }
    )
    async with Api(server.client_url) as api:
        await api.register("alice")
        for _ in range(3):
            assert (await api.login("alice", "wrong")).status == 403
