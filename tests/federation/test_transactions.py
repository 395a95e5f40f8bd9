"""Transactions between real servers over loopback TLS: to-device delivery, catch-up
after a restart, idempotency, size limits, forged signatures. (Typing, receipts and
presence in a real shared room: test_rooms_ephemeral.py.)"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from yarl import URL

from federation.auth import sign_request
from federation.errors import FederationError
from homeserver.app import RunningServer
from homeserver.events.keys import generate_signing_key
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import eventually, fed, federated, inbox, name, register, relay
from tests.helpers import Api, User

SEND = "/_matrix/federation/v1/send/"


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await federated(make_server), await federated(make_server)


async def send_to_device(
    server: RunningServer, sender: User, to: User, txn: str, body: str
) -> None:
    async with Api(server.client_url) as api:
        r = await api.put(
            f"/sendToDevice/m.test.message/{txn}",
            {"messages": {to.user_id: {to.device_id: {"body": body}}}},
            token=sender.access_token,
        )
        assert r.status == 200, r.body


async def test_to_device_reaches_a_device_on_another_server(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await send_to_device(a, alice, bob, "t1", "ciphertext-1")
    got = await eventually(lambda: inbox(b, bob), bool)
    assert got == [
        {"sender": alice.user_id, "type": "m.test.message", "content": {"body": "ciphertext-1"}}
    ]
    # Delivered and acknowledged: nothing left in A's outbox for B.
    pending = await eventually(
        lambda: a.hs.e2ee.to_device.store.outbox_pending(name(b), 0, 10), lambda p: p == []
    )
    assert pending == []
    # A '*' message goes to every device of the user.
    await send_to_device(a, alice, User(bob.user_id, "", "*", ""), "t2", "to-all")
    got = await eventually(lambda: inbox(b, bob), lambda e: len(e) == 2)
    assert got[1]["content"] == {"body": "to-all"}


async def test_queued_to_device_is_delivered_after_the_peer_restarts(
    pair: tuple[RunningServer, RunningServer], restart_server: RestartFn
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    b_name = name(b)
    await b.stop()  # restart_server below starts it again from the same data
    await send_to_device(a, alice, bob, "t1", "while-down-1")
    await send_to_device(a, alice, bob, "t2", "while-down-2")
    sender = relay(a).sender
    failures = await eventually(lambda: _failures(a, b_name), lambda n: n >= 2)
    assert failures >= 2  # it is retrying with back-off
    assert len(await a.hs.e2ee.to_device.store.outbox_pending(b_name, 0, 10)) == 2
    b = await restart_server(b)  # stops it again (harmless), starts it on the same data
    got = await eventually(lambda: inbox(b, bob), lambda e: len(e) == 2)
    assert [e["content"]["body"] for e in got] == ["while-down-1", "while-down-2"]
    assert sender.failures(b_name) == 0


async def _failures(server: RunningServer, destination: str) -> int:
    return relay(server).sender.failures(destination)


async def test_sender_resumes_its_outbox_after_its_own_restart(
    pair: tuple[RunningServer, RunningServer], restart_server: RestartFn
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await b.stop()
    await send_to_device(a, alice, bob, "t1", "queued-before-restart")
    a = await restart_server(a)  # the sender's own restart: start() resumes the outbox
    b = await restart_server(b)
    got = await eventually(lambda: inbox(b, bob), bool)
    assert [e["content"]["body"] for e in got] == ["queued-before-restart"]


def _txn(origin: str, edus: list[dict[str, Any]], pdus: list[Any] | None = None) -> dict[str, Any]:
    return {"origin": origin, "origin_server_ts": 1, "pdus": pdus or [], "edus": edus}


def _to_device_edu(sender: str, to: User, message_id: str, body: str) -> dict[str, Any]:
    return {
        "edu_type": "m.direct_to_device",
        "content": {
            "sender": sender,
            "type": "m.test.message",
            "message_id": message_id,
            "messages": {to.user_id: {to.device_id: {"body": body}}},
        },
    }


async def test_repeated_transaction_id_is_answered_without_reprocessing(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    bob = await register(b, "bob")
    client = fed(a).client
    alice = f"@alice:{name(a)}"
    pdu = {"type": "m.room.message", "room_id": "!r:x", "sender": alice, "content": {}}
    first = await client.put_json(
        name(b), SEND + "txn-1", _txn(name(a), [_to_device_edu(alice, bob, "m1", "one")], [pdu])
    )
    (event_id,) = first["pdus"]
    assert first == {"pdus": {event_id: {"error": "Unknown room"}}}
    # Same transaction id, different contents: the stored answer, nothing processed.
    again = await client.put_json(
        name(b), SEND + "txn-1", _txn(name(a), [_to_device_edu(alice, bob, "m2", "two")])
    )
    assert again == first
    # A new transaction repeating message id m1 is de-duplicated by message id.
    await client.put_json(
        name(b), SEND + "txn-2", _txn(name(a), [_to_device_edu(alice, bob, "m1", "one")])
    )
    assert [e["content"]["body"] for e in await inbox(b, bob)] == ["one"]


async def test_transaction_limits_and_origin_checks(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    bob = await register(b, "bob")
    client = fed(a).client
    edu = {"edu_type": "m.nothing", "content": {}}
    with pytest.raises(FederationError) as e:
        await client.put_json(name(b), SEND + "big", _txn(name(a), [edu] * 101))
    assert (e.value.status, e.value.errcode) == (400, "M_BAD_JSON")
    with pytest.raises(FederationError) as e:
        await client.put_json(name(b), SEND + "bigp", _txn(name(a), [], [{}] * 51))
    assert e.value.status == 400
    with pytest.raises(FederationError) as e:
        await client.put_json(name(b), SEND + "other", _txn("evil.example", []))
    assert e.value.status == 400
    # A to-device message claiming a sender of another server is dropped.
    forged = _to_device_edu("@mallory:evil.example", bob, "m9", "spoof")
    assert await client.put_json(name(b), SEND + "spoof", _txn(name(a), [forged])) == {"pdus": {}}
    assert await inbox(b, bob) == []


async def test_forged_transaction_signature_is_refused(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    bob = await register(b, "bob")
    body = _txn(name(a), [_to_device_edu(f"@alice:{name(a)}", bob, "f1", "forged")])
    uri = SEND + "forged"
    # Same key id as A's real key, but another secret: the signature cannot verify.
    fake = generate_signing_key(a.hs.signing_key.version)
    auth = sign_request(name(a), fake, name(b), "PUT", uri, body)
    url = URL(f"https://127.0.0.1:{b.federation_port}{uri}", encoded=True)
    async with (
        aiohttp.ClientSession() as s,
        s.put(url, json=body, headers={"Authorization": auth}, ssl=False) as resp,
    ):
        assert resp.status == 401
        assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"
    assert await inbox(b, bob) == []
