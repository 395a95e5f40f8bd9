"""PostgreSQL: the advisory lock lives as long as its connection. When that connection
dies the server takes the lock again; when another process took it meanwhile, the
server learns it has lost the database (and `myelin run` stops)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from homeserver.app import RunningServer
from homeserver.storage.process_lock import ADVISORY_KEY
from tests.conftest import ENGINE, ServerFactory

pytestmark = pytest.mark.skipif(
    ENGINE != "postgres", reason="SQLite's flock cannot outlive or lose its process"
)

WAIT_S = 40.0


async def lock_holders(conn: Any) -> list[int]:
    rows = await conn.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return [int(r["pid"]) for r in rows]


async def admin(server: RunningServer) -> Any:
    import asyncpg

    return await asyncpg.connect(server.hs.config.database_url)


async def test_lock_taken_again_when_its_connection_dies(make_server: ServerFactory) -> None:
    server = await make_server()
    conn = await admin(server)
    try:
        (holder,) = await lock_holders(conn)
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", holder)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            holders = await lock_holders(conn)
            if holders and holders != [holder]:
                break
            await asyncio.sleep(0.1)
        assert len(holders) == 1 and holders != [holder]
        assert not server.hs.lock_lost.is_set()
    finally:
        await conn.close()


async def test_lock_lost_to_another_process(make_server: ServerFactory) -> None:
    server = await make_server()
    thief = await admin(server)
    try:
        (holder,) = await lock_holders(thief)
        assert await thief.fetchval("SELECT pg_terminate_backend($1)", holder)
        deadline = time.monotonic() + WAIT_S
        taken = False
        while not taken and time.monotonic() < deadline:
            taken = await thief.fetchval("SELECT pg_try_advisory_lock($1)", ADVISORY_KEY)
            if not taken:
                await asyncio.sleep(0.01)  # the terminated backend is still on its way out
        if not taken:
            pytest.fail("the server took the lock again before the test could")
        await asyncio.wait_for(server.hs.lock_lost.wait(), WAIT_S)
    finally:
        await thief.close()
