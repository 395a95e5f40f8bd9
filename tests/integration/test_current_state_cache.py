"""``GET /state`` and ``GET /members`` read a room's whole current state from a cache
(``StateStore.current_state_cached``, rooms/store/state_store.py): a repeated read runs
no statement on ``current_state``, and every change of the state (a displayname, a
leave, a join, a topic) is in the very next answer, here and (on PostgreSQL) in another
process over the same database.
"""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from homeserver.storage.database import count_statements
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.processes import eventually, room_with


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


async def members(api: Api, user: User, room_id: str, query: str = "") -> dict[str, Any]:
    """user id -> content of their member event, as ``GET /members`` lists them."""
    body = await ok(await api.get(f"/rooms/{room_id}/members{query}", token=user.access_token))
    chunk = body["chunk"]
    assert [e["state_key"] for e in chunk] == sorted(e["state_key"] for e in chunk)
    return {e["state_key"]: e["content"] for e in chunk}


async def state_of(api: Api, user: User, room_id: str) -> dict[tuple[str, str], Any]:
    body = await ok(await api.get(f"/rooms/{room_id}/state", token=user.access_token))
    return {(e["type"], e["state_key"]): e["content"] for e in body}


async def test_members_and_state_follow_every_change_at_once(
    server: RunningServer, api: Api
) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await create_room(api, alice, preset="public_chat", topic="first")
    await ok(await api.post(f"/rooms/{room_id}/join", {}, token=bob.access_token))
    assert set(await members(api, alice, room_id)) == {alice.user_id, bob.user_id}
    assert (await state_of(api, alice, room_id))[("m.room.topic", "")]["topic"] == "first"

    # Cached now: a repeated read runs no statement on the room's current state.
    reader = server.hs.rooms_area.reader
    with count_statements() as counter:
        await reader.members_json(alice.user_id, room_id, None, None, None)
        await reader.state_json(alice.user_id, room_id)
    assert not [s for s in counter.by_sql if "current_state" in s], counter.by_sql

    # A displayname change is in the next answer of both.
    await ok(
        await api.put(
            f"/rooms/{room_id}/state/m.room.member/{bob.user_id}",
            {"membership": "join", "displayname": "Bobby"},
            token=bob.access_token,
        )
    )
    assert (await members(api, alice, room_id))[bob.user_id]["displayname"] == "Bobby"
    state = await state_of(api, alice, room_id)
    assert state[("m.room.member", bob.user_id)]["displayname"] == "Bobby"

    # A join, a leave and a topic.
    await ok(await api.post(f"/rooms/{room_id}/join", {}, token=carol.access_token))
    await ok(await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token))
    await ok(
        await api.put(
            f"/rooms/{room_id}/state/m.room.topic", {"topic": "second"}, token=alice.access_token
        )
    )
    listed = await members(api, alice, room_id)
    assert {u: c["membership"] for u, c in listed.items()} == {
        alice.user_id: "join",
        bob.user_id: "leave",
        carol.user_id: "join",
    }
    joined = await members(api, alice, room_id, "?membership=join")
    assert set(joined) == {alice.user_id, carol.user_id}
    not_joined = await members(api, alice, room_id, "?not_membership=join")
    assert set(not_joined) == {bob.user_id}
    state = await state_of(api, alice, room_id)
    assert state[("m.room.topic", "")]["topic"] == "second"
    assert state[("m.room.member", bob.user_id)]["membership"] == "leave"
    assert state[("m.room.member", carol.user_id)]["membership"] == "join"

    # Bob, who left, reads the state as it was at his leave, not the cached current one.
    frozen = await state_of(api, bob, room_id)
    assert frozen[("m.room.topic", "")]["topic"] == "first"
    assert ("m.room.member", carol.user_id) in frozen


async def test_a_change_on_one_process_reaches_the_others_cached_state(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    main, other = pair
    async with Api(main.client_url) as a, Api(other.client_url) as b:
        alice = await a.register("alice")
        bob = await b.register("bob")
        room_id = await room_with(a, alice, b, bob)
        # Main caches the room's state...
        assert set(await members(a, alice, room_id)) == {alice.user_id, bob.user_id}
        assert ("m.room.topic", "") not in await state_of(a, alice, room_id)
        # ...which the worker changes: the bus drops main's copy.
        await ok(
            await b.put(
                f"/rooms/{room_id}/state/m.room.member/{bob.user_id}",
                {"membership": "join", "displayname": "Worker Bob"},
                token=bob.access_token,
            )
        )
        await ok(
            await b.put(
                f"/rooms/{room_id}/state/m.room.topic", {"topic": "t"}, token=alice.access_token
            )
        )

        def renamed(r: Any) -> bool:
            names = {e["state_key"]: e["content"].get("displayname") for e in r.body["chunk"]}
            return bool(r.status == 200 and names.get(bob.user_id) == "Worker Bob")

        r = await eventually(
            lambda: a.get(f"/rooms/{room_id}/members", token=alice.access_token), renamed
        )
        assert renamed(r), r.body
        r = await eventually(
            lambda: a.get(f"/rooms/{room_id}/state", token=alice.access_token),
            lambda r: r.status == 200 and any(e["type"] == "m.room.topic" for e in r.body),
        )
        assert any(e["type"] == "m.room.topic" for e in r.body), r.body


async def test_initial_sync_gives_each_room_its_own_state_array(api: Api) -> None:
    """/sync's state comes down as one encoded array per room (``client_json.array``):
    each room's array holds that room's state before its timeline, and a room whose
    state is all in its timeline gets an empty list."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    rooms = [
        await create_room(api, alice, preset="public_chat", topic=f"room {i}") for i in range(2)
    ]
    for room_id in rooms:
        await ok(await api.post(f"/rooms/{room_id}/join", {}, token=bob.access_token))
        for i in range(3):
            await ok(
                await api.put(
                    f"/rooms/{room_id}/send/m.room.message/{room_id[1:6]}{i}",
                    {"msgtype": "m.text", "body": f"m{i}"},
                    token=alice.access_token,
                )
            )
    flt = '{"room":{"timeline":{"limit":2}}}'
    body = await ok(await api.get("/sync", token=bob.access_token, params={"filter": flt}))
    for room_id in rooms:
        synced = body["rooms"]["join"][room_id]["state"]["events"]
        current = await ok(await api.get(f"/rooms/{room_id}/state", token=bob.access_token))
        # The timeline holds only messages: the state before it is the current state.
        assert sorted(e["event_id"] for e in synced) == sorted(e["event_id"] for e in current)
        topic = next(e for e in synced if e["type"] == "m.room.topic")
        assert topic["content"]["topic"] == f"room {rooms.index(room_id)}"
        assert all("room_id" not in e and "age" in e["unsigned"] for e in synced)
    # All of a fresh room's state in its timeline: an empty state list.
    flt = '{"room":{"timeline":{"limit":50}}}'
    body = await ok(await api.get("/sync", token=bob.access_token, params={"filter": flt}))
    assert body["rooms"]["join"][rooms[0]]["state"]["events"] == []
