"""Typing, receipts and presence crossing servers in a real federated room:
the EDUs go through the persisted outbox to the servers in the room, and the
receiving server's users see them in /sync."""

from __future__ import annotations

import json
from typing import Any

from federation.client import encode_path
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register, send_text, settle
from tests.helpers import Api, User

NO_TIMELINE = json.dumps({"room": {"timeline": {"limit": 1}}})


async def ephemeral(api: Api, user: User, room_id: str) -> dict[str, Any]:
    r = await api.get(f"/sync?timeout=0&filter={q(NO_TIMELINE)}", token=user.access_token)
    assert r.status == 200, r.body
    room = r.body.get("rooms", {}).get("join", {}).get(room_id)
    return {} if room is None else {e["type"]: e["content"] for e in room["ephemeral"]["events"]}


async def presence_of(api: Api, user: User, target: str) -> dict[str, Any]:
    r = await api.get(f"/presence/{q(target)}/status", token=user.access_token)
    return dict(r.body) if r.status == 200 else {}


async def test_typing_receipts_and_presence_cross_servers(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    c = await make_server(federated=True, **FAST_RETRY)  # shares no room with anyone
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    api_c, carol = await register(c, "carol")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)

    # Typing on A shows on B, and stops on B.
    typing = f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}"
    r = await api_a.put(typing, {"typing": True, "timeout": 30000}, token=alice.access_token)
    assert r.status == 200, r.body
    got = await eventually(lambda: ephemeral(api_b, bob, room_id), lambda e: "m.typing" in e)
    assert got["m.typing"] == {"user_ids": [alice.user_id]}
    r = await api_a.put(typing, {"typing": False}, token=alice.access_token)
    assert r.status == 200
    got = await eventually(
        lambda: ephemeral(api_b, bob, room_id),
        lambda e: e.get("m.typing") == {"user_ids": []},
    )
    assert got["m.typing"] == {"user_ids": []}

    # A read receipt on B for Alice's message shows on A.
    event_id = await send_text(api_a, alice, room_id, "read me")
    await settle(a, b)
    r = await api_b.post(
        f"/rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    got = await eventually(lambda: ephemeral(api_a, alice, room_id), lambda e: "m.receipt" in e)
    receipt = got["m.receipt"]
    assert list(receipt) == [event_id]
    assert list(receipt[event_id]["m.read"]) == [bob.user_id]
    assert receipt[event_id]["m.read"][bob.user_id]["ts"] > 0

    # Presence goes to servers sharing a room (A), not to C.
    r = await api_b.put(
        f"/presence/{q(bob.user_id)}/status",
        {"presence": "online", "status_msg": "here"},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    seen = await eventually(
        lambda: presence_of(api_a, alice, bob.user_id), lambda p: p.get("status_msg") == "here"
    )
    assert (seen["presence"], seen.get("status_msg")) == ("online", "here")
    await settle(a, b, c)
    assert (await presence_of(api_c, carol, bob.user_id)).get("presence") != "online"

    # A server may not speak for another server's users, nor type in a room
    # for a user who is not joined.
    fed_c = c.hs.federation
    assert fed_c is not None
    for i, user_id in enumerate((alice.user_id, carol.user_id)):
        path = encode_path("_matrix", "federation", "v1", "send", f"spoof-{i}")
        edu = {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": user_id}}
        edu["content"]["typing"] = True
        body = {"origin": name(c), "origin_server_ts": 1, "pdus": [], "edus": [edu]}
        await fed_c.client.put_json(name(b), path, body)
    assert b.hs.typing.typing_users(room_id) == []

    # After Bob leaves, B gets no more typing from A.
    r = await api_b.post(f"/rooms/{q(room_id)}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_a.put(typing, {"typing": True, "timeout": 30000}, token=alice.access_token)
    assert r.status == 200
    await send_text(api_a, alice, room_id, "after bob left")
    await settle(a, b)
    assert b.hs.typing.typing_users(room_id) == []
    for api in (api_a, api_b, api_c):
        await api.__aexit__(None, None, None)


async def test_typing_reaches_every_server_in_the_room(make_server: ServerFactory) -> None:
    servers = [await make_server(federated=True, **FAST_RETRY) for _ in range(3)]
    users = [await register(s, f"u{i}") for i, s in enumerate(servers)]
    (api_a, alice) = users[0]
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    for api, user in users[1:]:
        r = await api.post(
            f"/join/{q(room_id)}?via={q(name(servers[0]))}", {}, token=user.access_token
        )
        assert r.status == 200, r.body
        await settle(*servers)
    api_c, carol = users[2]
    r = await api_c.put(
        f"/rooms/{q(room_id)}/typing/{q(carol.user_id)}",
        {"typing": True, "timeout": 30000},
        token=carol.access_token,
    )
    assert r.status == 200, r.body
    for api, user in users[:2]:
        got = await eventually(
            lambda api=api, user=user: ephemeral(api, user, room_id), lambda e: "m.typing" in e
        )
        assert got["m.typing"] == {"user_ids": [carol.user_id]}
    for api, _ in users:
        await api.__aexit__(None, None, None)
