"""SQLite group commit (``homeserver.storage.group_commit``): write transactions queued
behind the one writer share a COMMIT; each caller leaves only once its writes are
committed (a reader connection sees them), in order, and a failing member takes back
its own writes only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.storage.database import SqliteDatabase
from homeserver.storage.group_commit import CommitGroupLost

ROOMS = 16
PER_ROOM = 5


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "db.sqlite"), readers=2)
    await database.open()
    await database.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, room INTEGER, seq INTEGER, UNIQUE (room, seq))"
    )
    try:
        yield database
    finally:
        await database.close()


def count_commits(db: SqliteDatabase) -> list[str]:
    """Records the transaction-control statements the writer runs."""
    groups = db._groups
    assert groups is not None
    seen: list[str] = []
    run = groups.run

    async def counting(conn: Any, sql: str) -> None:
        seen.append(sql.split()[0])
        await run(conn, sql)

    groups.run = counting
    return seen


async def committed(db: SqliteDatabase, room: int, seq: int) -> bool:
    """Seen from a reader connection: only committed rows are."""
    n = await db.fetchval("SELECT COUNT(*) FROM t WHERE room = $1 AND seq = $2", room, seq)
    return bool(n)


async def test_rooms_writing_at_once_share_commits_and_keep_their_order(
    db: SqliteDatabase,
) -> None:
    control = count_commits(db)
    visible_on_return: list[bool] = []

    async def room_writer(room: int) -> None:
        for seq in range(PER_ROOM):
            async with db.transaction() as q:
                await q.execute("INSERT INTO t (room, seq) VALUES ($1, $2)", room, seq)
                await q.execute("UPDATE t SET seq = seq WHERE room = $1", room)
            # Answered only once durable: another connection sees it already.
            visible_on_return.append(await committed(db, room, seq))

    await asyncio.gather(*(room_writer(r) for r in range(ROOMS)))

    assert visible_on_return == [True] * ROOMS * PER_ROOM
    rows = await db.fetchall("SELECT room, seq FROM t ORDER BY id")
    assert len(rows) == ROOMS * PER_ROOM
    for room in range(ROOMS):
        # Written in each room's own order.
        assert [r["seq"] for r in rows if r["room"] == room] == list(range(PER_ROOM))
    commits = control.count("COMMIT")
    assert control.count("BEGIN") == commits
    # 80 transactions; queued ones joined a group instead of paying a COMMIT each.
    assert commits <= ROOMS * PER_ROOM // 4


async def test_a_failing_member_loses_only_its_own_writes(db: SqliteDatabase) -> None:
    control = count_commits(db)
    started = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (0, 0)")
            started.set()
            await asyncio.sleep(0.01)  # the others queue behind it meanwhile

    async def member(room: int) -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES ($1, 0)", room)
            if room == 2:
                raise ValueError("this member's own error")
            if room == 3:  # a constraint violation after a good write
                await q.execute("INSERT INTO t (room, seq) VALUES ($1, 0)", room)

    task = asyncio.ensure_future(first())
    await started.wait()
    results = await asyncio.gather(task, *(member(r) for r in (1, 2, 3, 4)), return_exceptions=True)
    assert results[0] is None and results[1] is None and results[4] is None
    assert isinstance(results[2], ValueError)
    assert "UNIQUE" in str(results[3])
    rooms = [r["room"] for r in await db.fetchall("SELECT room FROM t ORDER BY id")]
    assert rooms == [0, 1, 4]
    # One group: the failures were taken back to their savepoints, not the transaction.
    assert control.count("COMMIT") == 1
    assert control.count("ROLLBACK") == 2  # "ROLLBACK TO" each


async def test_the_first_member_failing_leaves_the_queued_ones_whole(
    db: SqliteDatabase,
) -> None:
    started = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (0, 0)")
            started.set()
            await asyncio.sleep(0.01)
            raise RuntimeError("first fails")

    async def member(room: int) -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES ($1, 0)", room)

    task = asyncio.ensure_future(first())
    await started.wait()
    results = await asyncio.gather(task, member(1), member(2), return_exceptions=True)
    assert isinstance(results[0], RuntimeError) and results[1:] == [None, None]
    assert [r["room"] for r in await db.fetchall("SELECT room FROM t ORDER BY id")] == [1, 2]


async def test_a_waiter_that_gives_up_does_not_hold_the_group_open(
    db: SqliteDatabase,
) -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (0, 0)")
            started.set()
            await release.wait()

    async def member(room: int) -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES ($1, 0)", room)

    task = asyncio.ensure_future(first())
    await started.wait()
    quitter = asyncio.ensure_future(member(1))
    await asyncio.sleep(0)
    release.set()
    await asyncio.sleep(0)
    quitter.cancel()  # it waited for the lock; the group stays open for it no more
    await asyncio.wait_for(task, 10)
    assert await committed(db, 0, 0)
    assert not await committed(db, 1, 0)
    await member(5)  # the writer is free again
    assert await committed(db, 5, 0)


async def test_sqlite_ending_the_whole_transaction_fails_every_member(
    db: SqliteDatabase,
) -> None:
    started = asyncio.Event()

    async def first() -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (0, 0)")
            started.set()
            await asyncio.sleep(0.01)

    async def breaker() -> None:
        async with db.transaction() as q:
            # What SQLite does itself on disk-full or I/O errors: the whole
            # transaction is gone, the earlier member's write with it.
            await q.execute("ROLLBACK")
            raise OSError("disk I/O error")

    task = asyncio.ensure_future(first())
    await started.wait()
    results = await asyncio.gather(task, breaker(), return_exceptions=True)
    assert isinstance(results[0], CommitGroupLost)  # told, never answered as written
    assert isinstance(results[1], OSError)
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 0
    async with db.transaction() as q:  # and the writer goes on
        await q.execute("INSERT INTO t (room, seq) VALUES (9, 0)")
    assert await committed(db, 9, 0)


async def test_a_lone_transaction_commits_at_once(db: SqliteDatabase) -> None:
    control = count_commits(db)
    for seq in range(3):
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (1, $1)", seq)
        assert await committed(db, 1, seq)
    assert control == ["BEGIN", "COMMIT"] * 3


async def test_a_caller_cancelled_during_begin_leaves_no_transaction_open(
    db: SqliteDatabase,
) -> None:
    groups = db._groups
    assert groups is not None
    run = groups.run
    at_begin = asyncio.Event()

    async def begin_seen(conn: Any, sql: str) -> None:
        if sql.startswith("BEGIN") and not at_begin.is_set():
            at_begin.set()  # the caller is cancelled while it awaits this BEGIN
        await run(conn, sql)

    groups.run = begin_seen

    async def writer() -> None:
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (1, 0)")

    task = asyncio.ensure_future(writer())
    await at_begin.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The BEGIN ran in the writer's thread all the same; it was rolled back before
    # anyone else got the writer, so the next transactions begin and commit.
    for seq in range(2):
        async with db.transaction() as q:
            await q.execute("INSERT INTO t (room, seq) VALUES (2, $1)", seq)
        assert await committed(db, 2, seq)
    assert not await committed(db, 1, 0)
    assert not groups.writer.in_transaction
