"""Which waiting sends make one batch (``send_queue.take_batch``): pure queue logic."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.send_queue import EventRequest, Outcome, Result, RoomSendQueues, take_batch
from homeserver.rooms.store.rooms_store import RoomInfo

ROOM = RoomInfo(1, "!r:x", KNOWN_ROOM_VERSIONS["12"], "@a:x")


def _req(
    event_type: str = "m.room.message", state_key: str | None = None, **kw: Any
) -> EventRequest:
    return EventRequest(ROOM, "@a:x", event_type, {}, state_key, **kw)


async def _queue(*reqs: EventRequest) -> deque[tuple[EventRequest, asyncio.Future[Outcome]]]:
    loop = asyncio.get_running_loop()
    return deque((r, loop.create_future()) for r in reqs)


async def test_messages_batch_up_to_the_limit() -> None:
    waiting = await _queue(*[_req() for _ in range(5)])
    assert len(take_batch(waiting, limit=3)) == 3
    assert len(take_batch(waiting, limit=3)) == 2
    assert not waiting


async def test_a_state_key_set_twice_ends_the_batch() -> None:
    first, msg, again = _req("m.room.name", ""), _req(), _req("m.room.name", "")
    other = _req("m.room.topic", "")
    waiting = await _queue(first, msg, other, again, _req())
    assert [r for r, _ in take_batch(waiting)] == [first, msg, other]
    assert next(r for r, _ in take_batch(waiting)) is again


async def test_solo_requests_go_alone() -> None:
    def check(_state: object) -> None:
        return None

    solo = _req("m.room.encryption", "", precheck=check)
    waiting = await _queue(_req(), solo, _req())
    assert [r.solo for r, _ in take_batch(waiting)] == [False]
    assert [r for r, _ in take_batch(waiting)] == [solo]
    assert len(take_batch(waiting)) == 1


async def test_abandoned_requests_are_skipped() -> None:
    waiting = await _queue(_req(), _req(), _req())
    waiting[1][1].cancel()
    batch = take_batch(waiting)
    assert len(batch) == 2 and all(not f.done() for _, f in batch)


async def test_other_writers_get_the_room_between_batches() -> None:
    """The drainer takes the room's lock per batch: a writer waiting for it (federation)
    goes before the next batch, and every request gets its own answer."""
    lock = asyncio.Lock()
    order: list[str] = []
    first_running = asyncio.Event()
    release_first = asyncio.Event()

    async def run(reqs: list[EventRequest]) -> list[Result]:
        order.append(f"batch of {len(reqs)}")
        if len(order) == 1:
            first_running.set()
            await release_first.wait()
        return [ValueError(r.event_type) for r in reqs]

    queues = RoomSendQueues(run, lambda _room_id: lock)

    async def other_writer() -> None:
        async with lock:
            order.append("other writer")

    first = asyncio.ensure_future(queues.submit(_req("one")))
    await first_running.wait()
    writer = asyncio.ensure_future(other_writer())
    later = [asyncio.ensure_future(queues.submit(_req(f"m{i}"))) for i in range(3)]
    await asyncio.sleep(0)
    assert queues.waiting(ROOM.room_id) == 3
    release_first.set()
    results = await asyncio.gather(first, *later, writer, return_exceptions=True)
    assert order == ["batch of 1", "other writer", "batch of 3"]
    assert [str(e) for e in results[:4]] == ["one", "m0", "m1", "m2"]
    assert queues.waiting(ROOM.room_id) == 0
