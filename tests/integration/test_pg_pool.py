"""The PostgreSQL pool releases connections without asyncpg's reset query (one round
trip less per statement; ``_keep_session`` in homeserver/storage/database.py), and
that costs nothing in isolation: a transaction that failed is still rolled back before
the connection serves anyone else, and what one statement did is seen by the next.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from homeserver.storage.database import PostgresDatabase, connect
from tests.conftest import ENGINE, _create_pg_database

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="the asyncpg pool")


async def test_release_sends_no_reset_query_and_failed_transactions_roll_back() -> None:
    url, drop = await _create_pg_database()
    db = PostgresDatabase(url, min_size=1, max_size=1)  # one connection: every use shares it
    await db.open()
    try:
        await db.execute("CREATE TABLE t (k INT PRIMARY KEY)")
        sent: list[str] = []
        async with db._pool.acquire() as conn:

            def log(record: Any) -> None:
                sent.append(record.query)

            conn.add_query_logger(log)
        assert sent == [], sent  # released: no reset query

        # A transaction that fails half-way is rolled back before the next user.
        with pytest.raises(RuntimeError):
            async with db.transaction() as q:
                await q.execute("INSERT INTO t (k) VALUES (1)")
                raise RuntimeError("boom")
        assert await db.fetchval("SELECT COUNT(*) FROM t") == 0
        # And a unique violation inside one does not leave the connection aborted.
        await db.execute("INSERT INTO t (k) VALUES (2)")
        with pytest.raises(Exception, match="duplicate key"):
            async with db.transaction() as q:
                await q.execute("INSERT INTO t (k) VALUES (3)")
                await q.execute("INSERT INTO t (k) VALUES (2)")
        assert await db.fetchval("SELECT array_agg(k ORDER BY k) FROM t") == [2]
        # Nothing but the statements themselves went over the connection.
        assert not any("RESET ALL" in s or "pg_advisory_unlock_all" in s for s in sent), sent
    finally:
        await db.close()
        await drop()


async def test_pool_size_bounds_the_connections_a_process_opens() -> None:
    url, drop = await _create_pg_database()
    db = await connect(url, pool_size=3)
    try:
        assert db.pool_stats().max_size == 3
        busy = asyncio.Event()

        async def hold() -> None:
            async with db.transaction() as q:
                await q.fetchval("SELECT 1")
                await busy.wait()

        holders = [asyncio.create_task(hold()) for _ in range(5)]
        for _ in range(100):  # bounded: until the pool is full
            if db.pool_stats().in_use == 3:
                break
            await asyncio.sleep(0.01)
        stats = db.pool_stats()
        assert stats.size == 3 and stats.in_use == 3
        busy.set()
        await asyncio.gather(*holders)
    finally:
        await db.close()
        await drop()
