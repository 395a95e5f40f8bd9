"""SQLite reads that find every reader busy reach the next free reader's thread as one
job (issue 15, fan-out: 20 woken /syncs of one message were 20 hand-offs
to the threads and 20 wake-ups of the loop back), each read still answered with its own
rows or its own error, and a cancelled caller strands no other read."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.storage.database import SqliteDatabase, count_statements
from tests.unit.storage.test_sqlite_one_job_per_statement import count_jobs

READERS = 3


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path / "db.sqlite"), readers=READERS)
    await database.open()
    await database.execute("CREATE TABLE t (n INTEGER)")
    async with database.transaction() as q:
        await q.executemany("INSERT INTO t (n) VALUES ($1)", [(n,) for n in range(40)])
    try:
        yield database
    finally:
        await database.close()


async def test_reads_of_one_turn_are_one_job_per_reader(db: SqliteDatabase) -> None:
    jobs = [0]
    for conn in db._reader_conns:
        count_jobs(conn, jobs)
    with count_statements() as counter:
        rows = await asyncio.gather(
            *(db.fetchall("SELECT n FROM t WHERE n >= $1 AND n < $2", i, i + 2) for i in range(20)),
            *(db.fetchone("SELECT n FROM t WHERE n = $1", i) for i in range(20, 30)),
        )
    # Each caller gets its own statement's rows.
    for i in range(20):
        assert [r["n"] for r in rows[i]] == [i, i + 1]
    for i in range(20, 30):
        assert rows[i]["n"] == i
    assert counter.total == 30  # still counted one by one, in the callers' contexts
    # Not 30: the first reads take the idle readers, the others queue and go to the
    # first reader free as one job.
    assert jobs[0] == READERS + 1
    # A lone read is one job, as before.
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 40
    assert jobs[0] == READERS + 2


async def test_an_error_is_its_own_reads_only(db: SqliteDatabase) -> None:
    good, bad, other = await asyncio.gather(
        db.fetchall("SELECT n FROM t WHERE n < $1", 2),
        db.fetchall("SELECT n FROM no_such_table"),
        db.fetchone("SELECT n FROM t WHERE n = $1", 7),
        return_exceptions=True,
    )
    assert isinstance(bad, sqlite3.OperationalError)
    assert isinstance(good, list) and [r["n"] for r in good] == [0, 1]
    assert not isinstance(other, BaseException) and other["n"] == 7


async def test_a_cancelled_read_strands_no_other(db: SqliteDatabase) -> None:
    # The first reads take the readers, the others queue; the first cancelled, the
    # queued ones still run, and every reader connection comes back.
    leader = asyncio.ensure_future(db.fetchall("SELECT n FROM t WHERE n < $1", 3))
    others = [
        asyncio.ensure_future(db.fetchone("SELECT n FROM t WHERE n = $1", i)) for i in range(5)
    ]
    await asyncio.sleep(0)  # every one has started and joined the batch
    leader.cancel()
    got = await asyncio.wait_for(asyncio.gather(*others), timeout=10)
    assert [r["n"] for r in got] == list(range(5))
    assert leader.cancelled()
    # A queued read cancelled: the others still answer.
    busy = [asyncio.ensure_future(db.fetchval("SELECT $1", i)) for i in range(READERS)]
    first = asyncio.ensure_future(db.fetchval("SELECT COUNT(*) FROM t"))
    second = asyncio.ensure_future(db.fetchval("SELECT MAX(n) FROM t"))
    third = asyncio.ensure_future(db.fetchval("SELECT MIN(n) FROM t"))
    await asyncio.sleep(0)
    second.cancel()
    assert await asyncio.wait_for(first, timeout=10) == 40
    assert await asyncio.wait_for(third, timeout=10) == 0
    assert await asyncio.gather(*busy) == list(range(READERS))
    assert second.cancelled()
    await asyncio.sleep(0.05)
    assert db._readers.qsize() == READERS
