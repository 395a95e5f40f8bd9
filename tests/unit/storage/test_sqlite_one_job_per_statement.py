"""On SQLite every statement is one job on its connection's thread (issue 15: through
aiosqlite's cursor API a fetch was three hand-offs between the event loop and the
thread, which were most of a woken /sync's CPU on 2 cores), and still closes its cursor:
a statement read only in part (``fetchone`` of many rows) keeps no read snapshot, which
would stop a WAL checkpoint from finishing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from homeserver.storage.database import SqliteDatabase, connect


def count_jobs(conn: Any, jobs: list[int]) -> None:
    """Count what is queued to this aiosqlite connection's thread."""
    queue = conn._tx
    put = queue.put_nowait

    class Counting:
        def put_nowait(self, item: Any) -> None:
            jobs[0] += 1
            put(item)

        def __getattr__(self, name: str) -> Any:
            return getattr(queue, name)

    conn._tx = Counting()


async def test_each_statement_is_one_thread_job(tmp_path: Path) -> None:
    db = await connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        assert isinstance(db, SqliteDatabase)
        await db.execute("CREATE TABLE t (n INTEGER)")
        jobs = [0]
        for conn in [db._writer, *db._reader_conns]:
            count_jobs(conn, jobs)
        await db.execute("INSERT INTO t (n) VALUES ($1), ($2), ($3)", 1, 2, 3)
        assert jobs[0] == 1
        assert [r["n"] for r in await db.fetchall("SELECT n FROM t ORDER BY n")] == [1, 2, 3]
        assert jobs[0] == 2
        row = await db.fetchone("SELECT n FROM t WHERE n > $1 ORDER BY n", 1)
        assert row is not None and row["n"] == 2
        assert jobs[0] == 3
        assert await db.fetchval("SELECT COUNT(*) FROM t") == 3
        assert jobs[0] == 4
        async with db.transaction() as q:  # BEGIN, COMMIT (the statement runs at once)
            await q.execute("DELETE FROM t WHERE n = $1", 3)
        assert jobs[0] == 6
        assert await db.fetchone("SELECT n FROM t WHERE n = $1", 3) is None
    finally:
        await db.close()


async def test_partly_read_statement_leaves_no_snapshot(tmp_path: Path) -> None:
    db = SqliteDatabase(str(tmp_path / "db.sqlite"), readers=1)
    await db.open()
    try:
        await db.execute("CREATE TABLE t (n INTEGER)")
        async with db.transaction() as q:
            for n in range(200):
                await q.execute("INSERT INTO t (n) VALUES ($1)", n)
        # One row of 200 read from the only reader connection: its cursor must be closed.
        row = await db.fetchone("SELECT n FROM t ORDER BY n")
        assert row is not None and row["n"] == 0
        await db.execute("INSERT INTO t (n) VALUES ($1)", 200)
        async with db.transaction() as q:
            pass
        busy = await db._writer.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        assert list(busy[0]) == [0, 0, 0]  # not blocked by a reader, every frame copied
        assert await db.fetchval("SELECT COUNT(*) FROM t") == 201
    finally:
        await db.close()
