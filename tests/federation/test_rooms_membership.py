"""Invites both ways, rejecting a remote invite, and a knock approved from another server."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, settle, sync_rooms


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await make_server(federated=True), await make_server(federated=True)


async def test_invites_both_ways_and_reject(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post(
        "/createRoom", {"preset": "private_chat", "name": "Secret"}, token=alice.access_token
    )
    room_a = r.body["room_id"]
    r = await api_a.post(
        f"/rooms/{q(room_a)}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    rooms = await sync_rooms(api_b, bob)
    invite_state = rooms["invite"][room_a]["invite_state"]["events"]
    assert {"type": "m.room.name", "state_key": "", "content": {"name": "Secret"}}.items() <= {
        **next(e for e in invite_state if e["type"] == "m.room.name")
    }.items()
    assert any(
        e["type"] == "m.room.member" and e["content"]["membership"] == "invite"
        for e in invite_state
    )
    r = await api_b.post(f"/join/{q(room_a)}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_a.get(f"/rooms/{q(room_a)}/joined_members", token=alice.access_token)
    assert set(r.body["joined"]) == {alice.user_id, bob.user_id}

    # The other way: Bob invites Alice to a room on B; Alice rejects it.
    r = await api_b.post("/createRoom", {"preset": "private_chat"}, token=bob.access_token)
    room_b = r.body["room_id"]
    r = await api_b.post(
        f"/rooms/{q(room_b)}/invite", {"user_id": alice.user_id}, token=bob.access_token
    )
    assert r.status == 200, r.body
    assert room_b in (await sync_rooms(api_a, alice))["invite"]
    r = await api_a.post(f"/rooms/{q(room_b)}/leave", {}, token=alice.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_b.get(
        f"/rooms/{q(room_b)}/state/m.room.member/{q(alice.user_id)}", token=bob.access_token
    )
    assert r.status == 200 and r.body["membership"] == "leave"
    assert room_b not in (await sync_rooms(api_a, alice))["invite"]
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_knock_approved_from_another_server(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post(
        "/createRoom",
        {
            "preset": "private_chat",
            "room_version": "12",
            "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ],
        },
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await api_b.post(
        f"/knock/{q(room_id)}?via={q(name(a))}", {"reason": "let me in"}, token=bob.access_token
    )
    assert r.status == 200, r.body
    assert room_id in (await sync_rooms(api_b, bob))["knock"]
    await settle(a, b)
    r = await api_a.get(
        f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}", token=alice.access_token
    )
    assert r.status == 200 and r.body["membership"] == "knock"
    r = await api_a.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_a.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
    assert set(r.body["joined"]) == {alice.user_id, bob.user_id}
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
