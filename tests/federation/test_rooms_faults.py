"""Hostile and concurrent input: forged signatures, wrong content hashes, events
from non-members, and conflicting state changes sent at once on two servers."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest

from federation.client import encode_path
from homeserver.app import RunningServer
from homeserver.events.builder import build_event
from homeserver.events.keys import SigningKey, generate_signing_key
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, settle, timeline_bodies


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await make_server(federated=True), await make_server(federated=True)


async def shared_room(a: RunningServer, b: RunningServer) -> tuple[Any, Any, Any, Any, str]:
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post(
        "/createRoom",
        {
            "preset": "public_chat",
            "power_level_content_override": {"users": {bob.user_id: 100}},
        },
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    return api_a, alice, api_b, bob, room_id


async def forge(
    a: RunningServer, b: RunningServer, room_id: str, sender: str, key: SigningKey, body: str
) -> dict[str, Any]:
    """A message event built on A's current graph, signed as B with ``key``."""
    rooms = a.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    ext = await rooms.events.extremities(room.room_nid)
    wanted = [("m.room.power_levels", ""), ("m.room.member", sender)]
    if not room.version.room_id_from_create_event:
        wanted.append(("m.room.create", ""))
    state = await rooms.current_state(room, wanted)
    fields = {
        "room_id": room_id,
        "type": "m.room.message",
        "sender": sender,
        "content": {"msgtype": "m.text", "body": body},
        "prev_events": [e.event.event_id for e in ext],
        "auth_events": [s.event.event_id for s in state.values()],
        "depth": max(e.event.depth for e in ext) + 1,
        "origin_server_ts": a.hs.clock.now_ms(),
    }
    return build_event(room.version, fields, name(b), key).pdu


async def send_txn(b: RunningServer, a: RunningServer, pdus: list[dict[str, Any]]) -> Any:
    fed = b.hs.federation
    assert fed is not None
    # A fresh transaction id each time: the receiver answers a repeated one
    # from its record without looking at the PDUs again.
    path = encode_path("_matrix", "federation", "v1", "send", "forged-" + secrets.token_hex(4))
    body = {"origin": name(b), "origin_server_ts": b.hs.clock.now_ms(), "pdus": pdus}
    return await fed.client.put_json(name(a), path, body)


async def test_forged_hash_and_non_member_events(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    api_a, alice, api_b, bob, room_id = await shared_room(a, b)
    real_key = b.hs.signing_key
    impostor = generate_signing_key(real_key.key_id.split(":", 1)[1])

    forged = await forge(a, b, room_id, bob.user_id, impostor, "forged")
    answer = await send_txn(b, a, [forged])
    assert next(iter(answer["pdus"].values()))["error"]

    non_member = await forge(a, b, room_id, f"@mallory:{name(b)}", real_key, "intruder")
    answer = await send_txn(b, a, [non_member])
    # Rejected by the auth rules, stored as rejected: handled, so no error entry (as
    # Synapse answers); it is never shown (below).
    assert list(answer["pdus"].values()) == [{}]

    tampered = await forge(a, b, room_id, bob.user_id, real_key, "original")
    tampered["content"] = {"msgtype": "m.text", "body": "tampered"}
    answer = await send_txn(b, a, [tampered])
    assert list(answer["pdus"].values()) == [{}]

    bodies = await timeline_bodies(api_a, alice, room_id)
    assert "forged" not in bodies and "intruder" not in bodies and "tampered" not in bodies
    r = await api_a.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=5", token=alice.access_token)
    newest = r.body["chunk"][0]
    assert newest["sender"] == bob.user_id and newest["type"] == "m.room.message"
    assert newest["content"] == {}  # kept redacted
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_concurrent_topics_resolve_the_same(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    api_a, alice, api_b, bob, room_id = await shared_room(a, b)
    for round_ in range(3):
        await asyncio.gather(
            api_a.put(
                f"/rooms/{q(room_id)}/state/m.room.topic",
                {"topic": f"A{round_}"},
                token=alice.access_token,
            ),
            api_b.put(
                f"/rooms/{q(room_id)}/state/m.room.topic",
                {"topic": f"B{round_}"},
                token=bob.access_token,
            ),
        )
        await settle(a, b)
        ra = await api_a.get(f"/rooms/{q(room_id)}/state/m.room.topic", token=alice.access_token)
        rb = await api_b.get(f"/rooms/{q(room_id)}/state/m.room.topic", token=bob.access_token)
        assert ra.body == rb.body
        assert ra.body["topic"] in (f"A{round_}", f"B{round_}")
    # Both sides keep talking on the merged graph.
    r = await api_a.put(
        f"/rooms/{q(room_id)}/send/m.room.message/m1",
        {"msgtype": "m.text", "body": "merged"},
        token=alice.access_token,
    )
    assert r.status == 200
    await settle(a, b)
    assert (await timeline_bodies(api_b, bob, room_id))[-1] == "merged"
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
