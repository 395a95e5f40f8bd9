"""Group commit: sends waiting for one room are built as a chain and persisted together
(``homeserver.rooms.send_queue``). Each test holds the room's lock while the sends queue,
so that they are taken as one batch when it is released."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any

from homeserver.app import RunningServer
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Queries
from tests.helpers import Api, Reply, User
from tests.integration.test_rooms_basic import create_room

WAIT_STEPS = 2000


def rooms_of(server: RunningServer) -> RoomService:
    return server.hs.rooms_area.rooms


@contextmanager
def transactions_seen(rooms: RoomService) -> Iterator[dict[str, Queries]]:
    """event id -> the transaction (its ``Queries``) that persisted it."""
    seen: dict[str, Queries] = {}

    async def hook(q: Queries, stored: StoredEvent, _plan: PersistPlan) -> AfterCommit | None:
        seen[stored.event.event_id] = q
        return None

    rooms.persister.txn_hooks.append(hook)
    try:
        yield seen
    finally:
        rooms.persister.txn_hooks.remove(hook)


async def queued_as_one_batch(
    rooms: RoomService, room_id: str, requests: list[Awaitable[Reply]]
) -> list[Reply]:
    """Start ``requests`` while the room is held, release it once all wait; their replies."""
    async with rooms.lock(room_id):
        tasks = [asyncio.ensure_future(r) for r in requests]
        for _ in range(WAIT_STEPS):
            if rooms.send_queues.waiting(room_id) >= len(tasks):
                break
            await asyncio.sleep(0.005)
        assert rooms.send_queues.waiting(room_id) == len(tasks)
    return list(await asyncio.gather(*tasks))


def send(api: Api, user: User, room_id: str, txn: str, body: str) -> Awaitable[Reply]:
    return api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": body},
        token=user.access_token,
    )


async def room_with(api: Api, n: int) -> tuple[str, list[User]]:
    users = [await api.register(f"u{i}") for i in range(n)]
    room_id = await create_room(api, users[0], preset="public_chat")
    for u in users[1:]:
        r = await api.post(f"/join/{room_id}", {}, token=u.access_token)
        assert r.status == 200, r.body
    return room_id, users


async def assert_linear(rooms: RoomService, room_id: str, event_ids: list[str]) -> list[Any]:
    """The events follow one another in stream order, each citing only the one before,
    with distinct consecutive positions and depths; the last is the only extremity."""
    stored = await rooms.events.by_ids(event_ids)
    assert set(stored) == set(event_ids)
    chain = sorted(stored.values(), key=lambda s: s.stream_ordering or 0)
    positions = [s.stream_ordering or 0 for s in chain]
    assert positions == list(range(positions[0], positions[0] + len(chain)))
    for before, after in itertools.pairwise(chain):
        assert after.event.prev_event_ids == [before.event.event_id]
        assert after.event.depth == before.event.depth + 1
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    extremities = await rooms.events.extremities(room.room_nid)
    assert [e.event.event_id for e in extremities] == [chain[-1].event.event_id]
    return chain


async def test_sixteen_senders_land_in_one_chain(server: RunningServer, api: Api) -> None:
    rooms = rooms_of(server)
    room_id, users = await room_with(api, 16)
    with transactions_seen(rooms) as seen:
        replies = await queued_as_one_batch(
            rooms,
            room_id,
            [send(api, u, room_id, "t", f"chained {i}") for i, u in enumerate(users)],
        )
    assert [r.status for r in replies] == [200] * 16, [r.body for r in replies]
    ids = [r.body["event_id"] for r in replies]
    assert len(set(ids)) == 16
    chain = await assert_linear(rooms, room_id, ids)
    # Committed together: one transaction wrote all sixteen.
    assert len({id(seen[i]) for i in ids}) == 1
    # Each kept its own txn id: a retry answers with its own event.
    again = await send(api, users[3], room_id, "t", "chained 3")
    assert again.body["event_id"] == ids[3]
    bodies = {s.event.content["body"] for s in chain}
    assert bodies == {f"chained {i}" for i in range(16)}
    # Every event of the chain is indexed for search.
    r = await api.post(
        "/search",
        {"search_categories": {"room_events": {"search_term": "chained", "filter": {"limit": 50}}}},
        token=users[0].access_token,
    )
    assert r.status == 200, r.body
    found = {h["result"]["event_id"] for h in r.body["search_categories"]["room_events"]["results"]}
    assert found == set(ids)


async def test_rejected_event_does_not_fail_the_batch(server: RunningServer, api: Api) -> None:
    rooms = rooms_of(server)
    room_id, (alice, bob) = await room_with(api, 2)
    # bob has power level 0: renaming the room (50 by default) fails its auth checks.
    rename = api.put(
        f"/rooms/{room_id}/state/m.room.name", {"name": "mine"}, token=bob.access_token
    )
    requests = [send(api, alice, room_id, "a1", "one"), rename]
    requests += [send(api, alice, room_id, f"a{i}", str(i)) for i in range(2, 6)]
    replies = await queued_as_one_batch(rooms, room_id, requests)
    assert replies[1].status == 403 and replies[1].errcode == "M_FORBIDDEN", replies[1].body
    ok = [r for i, r in enumerate(replies) if i != 1]
    assert [r.status for r in ok] == [200] * 5
    await assert_linear(rooms, room_id, [r.body["event_id"] for r in ok])
    r = await api.get(f"/rooms/{room_id}/state/m.room.name", token=alice.access_token)
    assert r.status == 404


async def test_txn_retries_inside_a_batch_share_the_event(server: RunningServer, api: Api) -> None:
    rooms = rooms_of(server)
    room_id, (alice, bob) = await room_with(api, 2)
    requests = [
        send(api, alice, room_id, "dup", "once"),
        send(api, bob, room_id, "dup", "bob's own"),  # same txn id, another user
        send(api, alice, room_id, "dup", "once"),
        send(api, alice, room_id, "other", "two"),
        send(api, alice, room_id, "dup", "once"),
    ]
    replies = await queued_as_one_batch(rooms, room_id, requests)
    assert [r.status for r in replies] == [200] * 5
    ids = [r.body["event_id"] for r in replies]
    assert ids[0] == ids[2] == ids[4]
    assert len({ids[0], ids[1], ids[3]}) == 3
    await assert_linear(rooms, room_id, [ids[0], ids[1], ids[3]])
    later = await send(api, alice, room_id, "dup", "once")
    assert later.body["event_id"] == ids[0]
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=alice.access_token,
        params={"dir": "b", "limit": "20"},
    )
    bodies = [e["content"].get("body") for e in r.body["chunk"] if e["type"] == "m.room.message"]
    assert sorted(bodies) == ["bob's own", "once", "two"]


async def test_a_failing_write_fails_only_its_own_send(server: RunningServer, api: Api) -> None:
    """A write that fails the batch's transaction: the batch is sent again one by one,
    and only that send fails."""
    rooms = rooms_of(server)
    room_id, (alice,) = await room_with(api, 1)

    async def refuse(q: Queries, stored: StoredEvent, _plan: PersistPlan) -> AfterCommit | None:
        if stored.event.content.get("body") == "boom":
            raise RuntimeError("this write fails")
        return None

    rooms.persister.txn_hooks.append(refuse)
    try:
        bodies = ["a", "b", "boom", "c", "d"]
        replies = await queued_as_one_batch(
            rooms, room_id, [send(api, alice, room_id, b, b) for b in bodies]
        )
    finally:
        rooms.persister.txn_hooks.remove(refuse)
    assert [r.status for r in replies] == [200, 200, 500, 200, 200]
    ok = [r.body["event_id"] for r in replies if r.status == 200]
    await assert_linear(rooms, room_id, ok)
