"""The server's own logs, captured as JSON lines at DEBUG while a user does private things.

Every line must parse, carry a request id, and hold none of: the password,
the access tokens, the message body, the end-to-end key material or the
to-device ciphertext. The access log names routes by pattern and drops the
query string, so an ``access_token`` parameter never reaches it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from homeserver.logs import install_log_handler
from tests.helpers import Api
from tests.integration.e2ee_device import Device

PASSWORD = "pw-Zebra-Quartz-9931"
BODY = "the-secret-plan-7f3e2a"
CIPHERTEXT = "ciphertext-Q29uZmlkZW50aWFs"
SEND_ROUTE = "/_matrix/client/v3/rooms/{roomId}/send/{type}/{txnId}"


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG, as the CLI's ``logging.format: json`` writes it."""
    root = logging.getLogger()
    saved = root.level, {n: logging.getLogger(n).level for n in ("aiosqlite", "asyncpg")}
    stream = io.StringIO()
    handler = install_log_handler("DEBUG", "json", stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


async def test_logs_carry_request_ids_and_no_secrets(api: Api, json_logs: io.StringIO) -> None:
    alice = await api.register("alice", PASSWORD)
    r = await api.login("alice", PASSWORD)
    assert r.status == 200
    token = r.body["access_token"]
    device = Device(alice.user_id, r.body["device_id"])
    one_time = device.one_time_keys(3)
    r = await api.post(
        "/keys/upload",
        {"device_keys": device.device_keys(), "one_time_keys": one_time},
        token=token,
    )
    assert r.status == 200, r.body
    room_id = (await api.post("/createRoom", {}, token=token)).body["room_id"]
    sent = await api.put(
        f"/rooms/{room_id}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": BODY},
        token=token,
    )
    assert sent.status == 200
    r = await api.put(
        "/sendToDevice/m.room.encrypted/t2",
        {"messages": {alice.user_id: {alice.device_id: {"ciphertext": CIPHERTEXT}}}},
        token=token,
    )
    assert r.status == 200
    # The deprecated query-parameter token, on a known route and on an unknown one.
    assert (await api.get("/account/whoami", params={"access_token": token})).status == 200
    assert (await api.get("/no/such/thing", params={"access_token": token})).status == 404
    assert (await api.get(f"/rooms/{room_id}/messages", token=token)).status == 200

    text = json_logs.getvalue()
    lines: list[dict[str, Any]] = [json.loads(line) for line in text.splitlines() if line]
    assert lines, "nothing was logged"
    for line in lines:
        assert {"ts", "level", "logger", "request_id", "msg"} <= line.keys()
    access = [line for line in lines if line["logger"] == "myelin.access"]
    # One access line per request, each with its own id, the one the client was told.
    ids = [line["request_id"] for line in access]
    assert len(ids) == len(set(ids)) and "-" not in ids
    (send_line,) = [line for line in access if line["route"] == SEND_ROUTE]
    assert send_line["request_id"] == sent.headers["X-Request-Id"]
    assert send_line["status"] == 200 and send_line["method"] == "PUT"
    routes = {line["route"] for line in access}
    assert "/_matrix/client/v3/account/whoami" in routes
    assert "/_matrix/client/v3/no/such/thing" in routes  # unmatched: the bare path
    secrets = {
        "password": PASSWORD,
        "registration token": alice.access_token,
        "login token": token,
        "message body": BODY,
        "to-device ciphertext": CIPHERTEXT,
        "device key": device.curve25519,
        **{f"one-time key {k}": v["key"] for k, v in one_time.items()},
    }
    for what, secret in secrets.items():
        assert secret not in text, f"the {what} appears in the logs"
