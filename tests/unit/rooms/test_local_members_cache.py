"""LocalMembersCache: a read that races with a membership change never stores what it
read, the bus's keys and "everything" drop lists, and the room count stays bounded."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from homeserver.rooms.store.local_members_cache import LOCAL_MEMBERS_CACHE, LocalMembersCache


async def test_second_get_is_served_without_reading() -> None:
    cache = LocalMembersCache()
    reads: list[int] = []

    async def read() -> list[str]:
        reads.append(1)
        return ["@a:hs"]

    assert await cache.get(1, read) == ["@a:hs"]
    assert await cache.get(1, read) == ["@a:hs"]
    assert len(reads) == 1


async def test_a_drop_during_the_read_keeps_the_stale_answer_out() -> None:
    cache = LocalMembersCache()
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_read() -> list[str]:
        started.set()
        await release.wait()
        return ["@old:hs"]  # what the database said before the join committed

    task = asyncio.create_task(cache.get(7, slow_read))
    await started.wait()
    cache.changed([7])  # the join commits while the read is in flight
    release.set()
    assert await task == ["@old:hs"]  # the reader gets its answer...

    async def fresh() -> list[str]:
        return ["@old:hs", "@new:hs"]

    # ...but it was not stored: the next get reads again.
    assert await cache.get(7, fresh) == ["@old:hs", "@new:hs"]


async def test_drop_everything_during_a_read_also_keeps_it_out() -> None:
    cache = LocalMembersCache()
    release = asyncio.Event()

    async def slow_read() -> list[str]:
        await release.wait()
        return ["@old:hs"]

    task = asyncio.create_task(cache.get(3, slow_read))
    await asyncio.sleep(0)
    cache.drop_cached(None)  # the bus reconnected: anything may have changed
    release.set()
    await task

    async def fresh() -> list[str]:
        return ["@new:hs"]

    assert await cache.get(3, fresh) == ["@new:hs"]


async def test_changes_are_published_and_bus_keys_drop_rooms() -> None:
    cache = LocalMembersCache()
    sent: list[tuple[str, list[str]]] = []
    cache.publish = lambda topic, keys: sent.append((topic, keys))

    async def one() -> list[str]:
        return ["@a:hs"]

    async def two() -> list[str]:
        return ["@a:hs", "@b:hs"]

    await cache.get(5, one)
    cache.changed([5])
    assert sent == [(LOCAL_MEMBERS_CACHE, ["5"])]
    assert await cache.get(5, two) == ["@a:hs", "@b:hs"]
    cache.drop_cached(["5", "not a number"])  # another process changed room 5
    assert await cache.get(5, one) == ["@a:hs"]


async def test_the_number_of_rooms_is_bounded() -> None:
    cache = LocalMembersCache(max_rooms=3)
    reads: list[int] = []

    def reader(nid: int) -> Callable[[], Awaitable[list[str]]]:
        async def read() -> list[str]:
            reads.append(nid)
            return [f"@u{nid}:hs"]

        return read

    for nid in range(10):
        await cache.get(nid, reader(nid))
    assert len(cache) == 3
    await cache.get(9, reader(9))  # still held: no read
    await cache.get(0, reader(0))  # evicted long ago: read again
    assert reads == [*range(10), 0]
