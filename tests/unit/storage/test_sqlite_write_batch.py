"""``Database.write_batch`` on SQLite: a short write transaction sent to the writer's
thread as one job when nobody else writes (the push evaluator's, on the path from a send
to its woken /sync), joined to the open commit group when others are writing; all or
nothing either way, and the writer is left outside a transaction after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.storage.database import SqliteDatabase, WriteBatch

INSERT = "INSERT INTO t (room, seq) VALUES ($1, $2)"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "db.sqlite"), readers=2)
    await database.open()
    await database.execute(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, room INTEGER, seq INTEGER, UNIQUE (room, seq))"
    )
    await database.execute("CREATE TABLE cursor (position INTEGER NOT NULL)")
    await database.execute("INSERT INTO cursor (position) VALUES (0)")
    try:
        yield database
    finally:
        await database.close()


async def hold_writer(db: SqliteDatabase) -> tuple[asyncio.Future[None], asyncio.Event]:
    """A transaction (writing room 5, seq 1) that holds the writer, so a commit group is
    open, until the returned event is set; its task ends once it committed."""
    holding = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as q:
            await q.execute(INSERT, 5, 1)
            holding.set()
            await release.wait()

    task = asyncio.ensure_future(writer())
    await holding.wait()
    return task, release


def count_jobs(db: SqliteDatabase) -> list[str]:
    """The jobs queued on the writer's thread (each a hand-off from the event loop)."""
    writer = db._writer
    seen: list[str] = []
    queue = writer._execute

    async def counting(fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(fn.__name__)
        return await queue(fn, *args, **kwargs)

    writer._execute = counting
    return seen


async def rows(db: SqliteDatabase) -> list[tuple[int, int]]:
    """Seen from a reader connection: only committed rows are."""
    found = await db.fetchall("SELECT room, seq FROM t ORDER BY room, seq")
    return [(int(r["room"]), int(r["seq"])) for r in found]


async def batch_of(*writes: tuple[str, list[tuple[Any, ...]]]) -> WriteBatch:
    batch = WriteBatch()
    for sql, args in writes:
        if len(args) == 1:
            await batch.execute(sql, *args[0])
        else:
            await batch.executemany(sql, args)
    return batch


async def test_a_batch_alone_is_one_job_on_the_writer(db: SqliteDatabase) -> None:
    batch = await batch_of(
        (INSERT, [(1, 1), (1, 2)]),
        (INSERT, [(2, 1)]),
        ("UPDATE cursor SET position = $1 WHERE position < $1", [(7,)]),
    )
    jobs = count_jobs(db)
    await db.write_batch(batch.statements)
    assert len(jobs) == 1, jobs  # BEGIN, four statements and COMMIT in one hand-off
    assert await rows(db) == [(1, 1), (1, 2), (2, 1)]
    assert await db.fetchval("SELECT position FROM cursor") == 7
    assert not db._writer.in_transaction


async def test_a_failing_batch_writes_nothing_and_leaves_the_writer_free(
    db: SqliteDatabase,
) -> None:
    await db.execute(INSERT, 1, 1)
    batch = await batch_of(
        (INSERT, [(3, 1)]),
        (INSERT, [(1, 1)]),  # already there: the UNIQUE constraint fails
        ("UPDATE cursor SET position = $1", [(9,)]),
    )
    with pytest.raises(Exception, match="UNIQUE"):
        await db.write_batch(batch.statements)
    assert not db._writer.in_transaction
    assert await rows(db) == [(1, 1)]
    assert await db.fetchval("SELECT position FROM cursor") == 0
    async with db.transaction() as q:  # the writer takes the next transaction as ever
        await q.execute(INSERT, 4, 1)
    assert await rows(db) == [(1, 1), (4, 1)]


async def test_a_batch_while_others_write_joins_their_commit_group(db: SqliteDatabase) -> None:
    task, release = await hold_writer(db)
    assert db._groups is not None and not db._groups.idle()
    batch = await batch_of((INSERT, [(6, 1)]), ("UPDATE cursor SET position = $1", [(3,)]))
    pending = asyncio.ensure_future(db.write_batch(batch.statements))
    await asyncio.sleep(0)
    assert not pending.done()  # behind the writer, in its group
    release.set()
    await asyncio.gather(task, pending)
    assert await rows(db) == [(5, 1), (6, 1)]
    assert await db.fetchval("SELECT position FROM cursor") == 3
    assert db._groups.idle()


async def test_a_batch_cannot_read() -> None:
    batch = WriteBatch()
    with pytest.raises(TypeError):
        await batch.fetchval("SELECT 1")


def trace_writer(db: SqliteDatabase) -> list[str]:
    """Every statement the writer's sqlite3 connection runs (SQLite's own trace hook)."""
    seen: list[str] = []
    db._writer._conn.set_trace_callback(seen.append)
    return seen


async def writer_synchronous(db: SqliteDatabase) -> int:
    """The writer's ``PRAGMA synchronous`` (1 NORMAL, 2 FULL)."""
    async with db.transaction() as q:
        return int(await q.fetchval("PRAGMA synchronous"))


async def test_a_derived_batch_alone_commits_without_an_fsync_and_restores_full(
    db: SqliteDatabase,
) -> None:
    assert await writer_synchronous(db) == 2  # the default: FULL
    batch = await batch_of((INSERT, [(1, 1)]), ("UPDATE cursor SET position = $1", [(4,)]))
    seen = trace_writer(db)
    jobs = count_jobs(db)
    await db.write_batch(batch.statements, derived=True)
    assert len(jobs) == 1, jobs  # still one hand-off: the PRAGMAs ride in the same job
    assert seen[0] == "PRAGMA synchronous=NORMAL" and seen[1] == "BEGIN IMMEDIATE", seen
    assert seen[-2:] == ["COMMIT", "PRAGMA synchronous=FULL"], seen
    assert await rows(db) == [(1, 1)]  # committed, visible to the readers
    assert await writer_synchronous(db) == 2
    seen.clear()
    await db.write_batch(
        (await batch_of((INSERT, [(2, 1)]))).statements
    )  # not derived: under FULL, no PRAGMA
    assert not any(s.startswith("PRAGMA") for s in seen), seen


async def test_a_failing_derived_batch_restores_full(db: SqliteDatabase) -> None:
    await db.execute(INSERT, 1, 1)
    batch = await batch_of((INSERT, [(1, 1)]), ("UPDATE cursor SET position = $1", [(9,)]))
    with pytest.raises(Exception, match="UNIQUE"):
        await db.write_batch(batch.statements, derived=True)
    assert not db._writer.in_transaction
    assert await db.fetchval("SELECT position FROM cursor") == 0
    assert await writer_synchronous(db) == 2


async def test_a_derived_batch_joining_a_group_keeps_the_groups_fsync(db: SqliteDatabase) -> None:
    task, release = await hold_writer(db)
    seen = trace_writer(db)
    batch = await batch_of((INSERT, [(6, 1)]))
    pending = asyncio.ensure_future(db.write_batch(batch.statements, derived=True))
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(task, pending)
    assert await rows(db) == [(5, 1), (6, 1)]
    assert not any(s.startswith("PRAGMA") for s in seen), seen  # the send's COMMIT: FULL


async def test_normal_configured_stays_normal(tmp_path: Path) -> None:
    database = SqliteDatabase(str(tmp_path / "n.sqlite"), readers=1, synchronous="normal")
    await database.open()
    try:
        await database.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, room INTEGER, seq INTEGER)")
        seen = trace_writer(database)
        await database.write_batch((await batch_of((INSERT, [(1, 1)]))).statements, derived=True)
        assert not any(s.startswith("PRAGMA") for s in seen), seen
        assert await writer_synchronous(database) == 1
    finally:
        await database.close()
