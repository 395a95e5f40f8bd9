"""Partial-state resyncs among several processes (PostgreSQL): exactly one resumes each.

Server B runs as a main process and a worker; Bob joins A's room with partial state
through the worker, whose resync is held back (tests/federation/partial_support.py),
so the marker's claim is the worker's. The main process does not take the room while
that claim holds; once the worker is gone and its claim has run out, the main
process (the background lease's holder) takes it up and completes the state. Two
processes claiming one room at once: one wins.
"""

from __future__ import annotations

import asyncio

import pytest

from homeserver.app import start_worker
from tests.conftest import ENGINE, ServerFactory, free_port, stop_or_explain
from tests.federation.partial_support import (
    PARTIAL_ON,
    hold_resync,
    partial_joins,
    release_resync,
    room_info,
)
from tests.federation.rooms_support import name, q
from tests.federation.test_partial_state_join import _big_room
from tests.helpers import Api
from tests.processes import WORKER, until

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")

LEASE_MS = 1000  # claims (as leases) run out fast, for the test


async def test_main_takes_up_the_resync_of_a_worker_that_is_gone(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(
        federated=True,
        federation=PARTIAL_ON,
        workers={WORKER: {"client_port": free_port()}},
        worker_lease_ms=LEASE_MS,
    )
    room_id, api_a, _alice, members = await _big_room(a)
    worker = await start_worker(b.hs.config, WORKER)
    try:
        held = hold_resync(worker)
        async with Api(worker.client_url) as w:
            bob = await w.register("bob")
            r = await w.post(
                f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token
            )
            assert r.status == 200, r.body
        assert [h.room_id for h in held] == [room_id]
        room = await room_info(b, room_id)
        main_partial = partial_joins(b)
        store = main_partial.store
        row = await store.db.fetchone(
            "SELECT owner FROM partial_state_rooms WHERE room_nid = $1", room.room_nid
        )
        assert row is not None and row["owner"] == WORKER
        # The worker's claim holds (it keeps it while its resync runs): not taken here.
        await store.renew([room.room_nid], WORKER, main_partial.clock.now_ms() + 60_000)
        await main_partial.resume()
        await asyncio.sleep(0.2)
        assert await main_partial.is_partial(room.room_nid)
        assert room.room_nid not in main_partial._tasks
        # Two processes claiming at once (the claim ran out): exactly one gets it.
        await store.renew([room.room_nid], WORKER, 0)
        now = main_partial.clock.now_ms()
        won = await asyncio.gather(
            *(store.claim(room.room_nid, who, now, now + LEASE_MS) for who in ("x", "y", "z"))
        )
        assert sorted(won) == [False, False, True]
    finally:
        await stop_or_explain(worker)

    # The worker is gone; its claim runs out, and the main process (the background
    # lease's holder, looking every claim time) takes the room up and completes it.
    async def whole() -> bool:
        return await store.get(room.room_nid, remember=False) is None

    assert await until(whole, rounds=1200)
    assert room.room_nid in main_partial._tasks
    async with Api(b.client_url) as api_b:
        r = await api_b.get(f"/rooms/{q(room_id)}/joined_members", token=bob.access_token)
        assert r.status == 200, r.body
        assert len(r.body["joined"]) == 2 + len(members)
    await api_a.__aexit__(None, None, None)


async def test_a_rejoin_marked_partial_is_seen_by_the_other_process(
    make_server: ServerFactory,
) -> None:
    """The worker's /sync remembers a room it saw complete; a rejoin through the main
    process marks it partial again, and the worker's non-lazy /sync leaves it out
    until whole (the marker is announced over the signal bus)."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(
        federated=True, federation=PARTIAL_ON, workers={WORKER: {"client_port": free_port()}}
    )
    room_id, api_a, _alice, _members = await _big_room(a)
    worker = await start_worker(b.hs.config, WORKER)
    try:
        async with Api(b.client_url) as main_api, Api(worker.client_url) as w:
            bob = await main_api.register("bob")
            path = f"/join/{q(room_id)}?server_name={q(name(a))}"
            r = await main_api.post(path, {}, token=bob.access_token)
            assert r.status == 200, r.body
            room = await room_info(b, room_id)
            assert await partial_joins(b).wait_full(room, 60.0)

            async def synced_in() -> bool:
                r = await w.get("/sync?timeout=0", token=bob.access_token)
                assert r.status == 200, r.body
                return room_id in r.body["rooms"]["join"]

            # The worker has the room (and remembers it complete).
            assert await until(synced_in)
            r = await main_api.post(f"/rooms/{q(room_id)}/leave", {}, token=bob.access_token)
            assert r.status == 200, r.body
            held = hold_resync(b)
            r = await main_api.post(path, {}, token=bob.access_token)
            assert r.status == 200, r.body
            assert await partial_joins(b).is_partial(room.room_nid)

            async def left_out() -> bool:
                return not await synced_in()

            assert await until(left_out)
            # Stays out while partial (not a passing moment).
            await asyncio.sleep(0.3)
            assert not await synced_in()
            release_resync(b, held)
            assert await partial_joins(b).wait_full(room, 60.0)
            assert await until(synced_in)
    finally:
        await stop_or_explain(worker)
    await api_a.__aexit__(None, None, None)
