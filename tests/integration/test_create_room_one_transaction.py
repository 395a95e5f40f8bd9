"""createRoom persists the room and its initial events as one chain in ONE transaction
(``RoomService.create_room_chain``): the same events, in the spec's order, each on the
one before; and a failure anywhere leaves no half-made room."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.test_send_batches import assert_linear, rooms_of, transactions_seen


async def room_events(api: Api, token: str, room_id: str) -> list[dict[str, Any]]:
    r = await api.get(f"/rooms/{room_id}/messages", token=token, params={"dir": "f", "limit": "50"})
    assert r.status == 200, r.body
    events: list[dict[str, Any]] = r.body["chunk"]
    return events


async def joined_rooms(api: Api, token: str) -> list[str]:
    r = await api.get("/joined_rooms", token=token)
    assert r.status == 200, r.body
    rooms: list[str] = r.body["joined_rooms"]
    return rooms


async def test_initial_events_are_one_transaction_in_the_spec_order(
    server: RunningServer, api: Api
) -> None:
    rooms = rooms_of(server)
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    override = {"type": "m.room.power_levels", "state_key": "", "content": {"users_default": 10}}
    body = {
        "preset": "private_chat",
        "room_alias_name": "onetxn",
        "name": "One",
        "topic": "commit",
        "initial_state": [
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}},
            {**override, "content": {"users_default": 10, "events_default": 0}},
        ],
        "invite": [bob.user_id, carol.user_id],
        "visibility": "public",
    }
    with transactions_seen(rooms) as seen:
        r = await api.post("/createRoom", body, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]

    events = await room_events(api, alice.access_token, room_id)
    kinds = [(e["type"], e.get("state_key")) for e in events]
    assert kinds == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.guest_access", ""),
        ("m.room.encryption", ""),
        ("m.room.power_levels", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
        ("m.room.member", carol.user_id),
    ]
    ids = [e["event_id"] for e in events]
    # One transaction wrote the room and all of them.
    assert set(seen) >= set(ids)
    assert len({id(seen[i]) for i in ids}) == 1
    # A chain: consecutive positions, each citing the one before, one extremity.
    await assert_linear(rooms, room_id, ids)
    # Auth events name the state before each event (the second power levels event
    # is authorised by the first, which it replaces).
    pl1, pl2 = (e for e in events if e["type"] == "m.room.power_levels")
    stored = await rooms.events.by_ids([pl2["event_id"]])
    assert pl1["event_id"] in stored[pl2["event_id"]].event.auth_event_ids
    assert pl2["unsigned"]["replaces_state"] == pl1["event_id"]
    assert pl2["unsigned"]["prev_content"] == pl1["content"]
    # The state the room ends with, and what the transaction wrote beside the events.
    r = await api.get(f"/rooms/{room_id}/state/m.room.power_levels", token=alice.access_token)
    assert r.body["users_default"] == 10
    r = await api.get("/directory/room/%23onetxn:" + server.hs.config.server_name)
    assert r.status == 200 and r.body["room_id"] == room_id, r.body
    r = await api.get("/publicRooms")
    assert room_id in [c["room_id"] for c in r.body["chunk"]]
    assert room_id in await joined_rooms(api, alice.access_token)
    r = await api.post(f"/join/{room_id}", {}, token=bob.access_token)  # the invite holds
    assert r.status == 200, r.body


async def test_a_failing_initial_event_leaves_no_room(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    count = "SELECT COUNT(*) FROM rooms"
    before = await server.hs.db.fetchval(count)
    # Its power levels are not integers: the event fails its checks (v12 auth rules).
    r = await api.post(
        "/createRoom",
        {"name": "half", "power_level_content_override": {"events_default": "high"}},
        token=alice.access_token,
    )
    assert r.status in (400, 403), r.body
    assert r.errcode in ("M_BAD_JSON", "M_FORBIDDEN"), r.body
    assert await joined_rooms(api, alice.access_token) == []
    assert await server.hs.db.fetchval(count) == before


async def test_racing_for_one_alias_makes_one_room(server: RunningServer, api: Api) -> None:
    users = [await api.register(f"racer{i}") for i in range(4)]
    replies = await asyncio.gather(
        *(
            api.post("/createRoom", {"room_alias_name": "prize"}, token=u.access_token)
            for u in users
        )
    )
    assert sorted(r.status for r in replies) == [200, 400, 400, 400], [r.body for r in replies]
    assert {r.errcode for r in replies if r.status == 400} == {"M_ROOM_IN_USE"}
    made = [await joined_rooms(api, u.access_token) for u in users]
    assert sorted(len(m) for m in made) == [0, 0, 0, 1]
    assert await server.hs.db.fetchval("SELECT COUNT(*) FROM rooms") == 1
