"""On SQLite the statements of a write transaction run at once on the event loop's
thread (``database._WriterQueries``): the writer's lock, which every other writer waits
for, is held for the body's own work, not for a turn of a busy event loop per statement.
BEGIN, COMMIT (its fsync) and big batches stay on the writer's thread."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.storage.database import INLINE_ROWS, SqliteDatabase, connect
from tests.unit.storage.test_sqlite_one_job_per_statement import count_jobs


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    """A SQLite database with one table ``t (n INTEGER PRIMARY KEY)``."""
    database = await connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert isinstance(database, SqliteDatabase)
        await database.execute("CREATE TABLE t (n INTEGER PRIMARY KEY)")
        yield database
    finally:
        await database.close()


async def test_a_transaction_body_takes_no_turn_of_the_loop(db: SqliteDatabase) -> None:
    turns = [0]
    stop = asyncio.Event()

    async def ticker() -> None:
        for _ in range(100_000):
            if stop.is_set():
                return
            turns[0] += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ticker())
    await asyncio.sleep(0)
    async with db.transaction() as q:
        before = turns[0]
        for n in range(20):
            await q.execute("INSERT INTO t (n) VALUES ($1)", n)
        assert await q.fetchval("SELECT COUNT(*) FROM t") == 20
        rows = await q.fetchall("SELECT n FROM t WHERE n < $1 ORDER BY n", 3)
        assert [r["n"] for r in rows] == [0, 1, 2]
        await q.executemany("INSERT INTO t (n) VALUES ($1)", [(100 + i,) for i in range(5)])
        assert turns[0] == before  # nothing else ran in between
    stop.set()
    await task
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 25  # committed, readable


async def test_only_begin_commit_and_big_batches_go_to_the_thread(db: SqliteDatabase) -> None:
    jobs = [0]
    count_jobs(db._writer, jobs)
    gate = asyncio.Event()

    async def member(base: int, rows: int) -> None:
        async with db.transaction() as q:
            await gate.wait()
            await q.executemany("INSERT INTO t (n) VALUES ($1)", [(base + i,) for i in range(rows)])

    # Three transactions at once: one commit group (BEGIN, two SAVEPOINTs run at
    # once, COMMIT); the big batch of the last one is a job of its own.
    tasks = [
        asyncio.ensure_future(member(0, 3)),
        asyncio.ensure_future(member(1000, 3)),
        asyncio.ensure_future(member(2000, INLINE_ROWS + 1)),
    ]
    for _ in range(100):
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert jobs[0] == 3  # BEGIN, the big executemany, COMMIT
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 6 + INLINE_ROWS + 1


async def test_a_failing_member_is_rolled_back_alone(db: SqliteDatabase) -> None:
    await db.execute("INSERT INTO t (n) VALUES (1)")
    gate = asyncio.Event()
    outcome: dict[int, str] = {}

    async def member(n: int) -> None:
        try:
            async with db.transaction() as q:
                await gate.wait()
                await q.execute("INSERT INTO t (n) VALUES ($1)", n + 100)
                await q.execute("INSERT INTO t (n) VALUES ($1)", n)  # 1 exists already
            outcome[n] = "ok"
        except Exception as e:
            outcome[n] = type(e).__name__

    tasks = [asyncio.ensure_future(member(n)) for n in (2, 1, 3)]
    for _ in range(100):
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*tasks)
    assert outcome == {2: "ok", 1: "IntegrityError", 3: "ok"}
    rows = await db.fetchall("SELECT n FROM t ORDER BY n")
    assert [r["n"] for r in rows] == [1, 2, 3, 102, 103]
