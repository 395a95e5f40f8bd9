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


# ------------------------------------------------ commits bring the list up to date


async def _cached(cache: LocalMembersCache, room: int, users: list[str]) -> None:
    async def read() -> list[str]:
        return users

    assert await cache.get(room, read) == users


async def _never() -> list[str]:
    raise AssertionError("the list was read again")


async def test_a_commit_updates_the_cached_list_without_a_read() -> None:
    cache = LocalMembersCache(server_name="hs")
    sent: list[tuple[str, list[str]]] = []
    cache.publish = lambda topic, keys: sent.append((topic, keys))
    await _cached(cache, 1, ["@a:hs", "@b:hs"])
    txn = object()
    cache.writing(txn, 1, "@c:hs", "join")
    cache.writing(txn, 1, "@b:hs", "leave")
    cache.writing(txn, 1, "@r:remote", "join")  # not local: not listed
    cache.writing(txn, 1, "@d:hsx", "invite")  # another server whose name ends alike
    cache.writing(txn, 1, "@e:hs", "knock")
    cache.committed(txn, [1, 1])
    assert sorted(await cache.get(1, _never)) == ["@a:hs", "@c:hs", "@e:hs"]
    assert sent == [(LOCAL_MEMBERS_CACHE, ["1"])]  # other processes still drop it


async def test_a_rollback_forgets_the_writes_and_drops_the_list() -> None:
    cache = LocalMembersCache(server_name="hs")
    await _cached(cache, 1, ["@a:hs"])
    txn = object()
    cache.writing(txn, 1, "@c:hs", "join")
    cache.changed([1], txn)
    await _cached(cache, 1, ["@a:hs"])  # read again
    cache.committed(txn, [1])  # a late report of the same transaction changes nothing
    await _cached(cache, 1, ["@a:hs"])


async def test_another_drop_before_the_commit_leaves_the_list_to_a_read() -> None:
    for interloper in ("bus", "other-writer", "everything"):
        cache = LocalMembersCache(server_name="hs")
        await _cached(cache, 1, ["@a:hs"])
        txn = object()
        cache.writing(txn, 1, "@c:hs", "join")
        if interloper == "bus":
            cache.drop_cached(["1"])
        elif interloper == "other-writer":
            cache.writing(object(), 1, "@z:hs", "join")
        else:
            cache.drop_cached(None)
        cache.committed(txn, [1])
        await _cached(cache, 1, ["@a:hs", "@c:hs", "@z:hs"])  # read, not made up


async def test_a_read_racing_the_write_does_not_overwrite_the_update() -> None:
    cache = LocalMembersCache(server_name="hs")
    await _cached(cache, 1, ["@a:hs"])
    txn = object()
    cache.writing(txn, 1, "@c:hs", "join")
    release = asyncio.Event()

    async def stale() -> list[str]:
        await release.wait()
        return ["@a:hs"]  # read before the commit

    task = asyncio.create_task(cache.get(1, stale))
    await asyncio.sleep(0)
    cache.committed(txn, [1])
    release.set()
    assert await task == ["@a:hs"]
    assert sorted(await cache.get(1, _never)) == ["@a:hs", "@c:hs"]


async def test_without_a_server_name_or_a_cached_list_a_commit_only_drops() -> None:
    cache = LocalMembersCache()
    await _cached(cache, 1, ["@a:hs"])
    txn = object()
    cache.writing(txn, 1, "@c:hs", "join")
    cache.committed(txn, [1])
    await _cached(cache, 1, ["@a:hs", "@c:hs"])
    named = LocalMembersCache(server_name="hs")
    txn = object()
    named.writing(txn, 2, "@c:hs", "join")  # nothing cached for room 2
    named.committed(txn, [2])
    await _cached(named, 2, ["@c:hs"])
