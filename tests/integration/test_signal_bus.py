"""The PostgreSQL signal bus between two processes' ends, over the throwaway PostgreSQL.

Two ``PgSignalBus`` instances in one test process stand for two Myelin
processes: what one publishes, the other applies; each ignores its own echo;
big lists are split below PostgreSQL's payload limit; and after its
connection is killed, a bus reconnects, wakes everyone and empties its
caches (the catch-up), then carries messages again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import asyncpg
import pytest

from homeserver.streams.pg_bus import PgSignalBus
from tests.conftest import ENGINE, _create_pg_database

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="the signal bus is PostgreSQL's")

WAIT_S = 30.0  # a bound for "it arrives", not a measurement


@dataclass
class Process:
    """What one process's bus delivers to: its woken users, dropped keys, catch-ups."""

    bus: PgSignalBus | None = None
    woken: list[str] = field(default_factory=list)
    dropped: list[list[str] | None] = field(default_factory=list)
    everyone_woken: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def wake(self, users: list[str]) -> None:
        self.woken.extend(users)
        self.arrived.set()

    def wake_everyone(self) -> None:
        self.everyone_woken += 1
        self.arrived.set()

    def drop(self, keys: list[str] | None) -> None:
        self.dropped.append(keys)
        self.arrived.set()

    async def until(self, done: Callable[[], bool]) -> None:
        """Wait (bounded) until ``done`` holds, re-checking at every delivery."""
        async with asyncio.timeout(WAIT_S):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def dsn() -> AsyncIterator[str]:
    url, drop = await _create_pg_database()
    yield url
    await drop()


async def open_process(dsn: str) -> Process:
    p = Process()
    bus = PgSignalBus(dsn, p.wake, p.wake_everyone, keepalive_s=0.2, reconnect_min_s=0.05)
    bus.subscribe("things", p.drop)
    await bus.start()
    p.bus = bus
    return p


async def test_messages_cross_and_echoes_are_ignored(dsn: str) -> None:
    a, b = await open_process(dsn), await open_process(dsn)
    assert a.bus is not None and b.bus is not None
    try:
        a.bus.publish_wake(["@alice:hs", "!room:hs"])
        a.bus.publish("things", ["k1", "k2"])
        a.bus.publish("unknown-cache", ["k3"])
        await b.until(lambda: len(b.woken) == 2 and len(b.dropped) == 1)
        assert b.woken == ["@alice:hs", "!room:hs"]
        assert b.dropped == [["k1", "k2"]]
        # B answers; A gets B's message, and by then would have had its own echo too.
        b.bus.publish_wake(["@bob:hs"])
        await a.until(lambda: a.woken == ["@bob:hs"])
        assert a.dropped == [] and a.everyone_woken == 0
    finally:
        await a.bus.close()
        await b.bus.close()


async def test_large_lists_are_split_and_all_arrive(dsn: str) -> None:
    a, b = await open_process(dsn), await open_process(dsn)
    assert a.bus is not None and b.bus is not None
    try:
        users = [f"@user{i:05d}_{'x' * 40}:example.org" for i in range(2000)]  # ~120 kB
        a.bus.publish_wake(users)
        await a.bus.flush()
        await b.until(lambda: len(b.woken) >= len(users))
        assert b.woken == users
    finally:
        await a.bus.close()
        await b.bus.close()


async def test_reconnect_catches_up_then_carries_messages(dsn: str) -> None:
    a, b = await open_process(dsn), await open_process(dsn)
    assert a.bus is not None and b.bus is not None
    try:
        assert b.bus.connections == 1
        admin = await asyncpg.connect(dsn)
        try:
            # Kill every other connection to the database, B's listening one among them,
            # as a PostgreSQL restart or a network cut would.
            killed = await admin.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()) AS t"
            )
        finally:
            await admin.close()
        assert killed >= 2
        # B notices, reconnects and catches up: every request woken, every cache emptied.
        await b.until(lambda: b.bus is not None and b.bus.connections >= 2)
        await b.until(lambda: b.everyone_woken >= 1 and None in b.dropped)
        # A's connection may have been cut too; either way its messages reach B again.
        a.bus.publish_wake(["@after:hs"])
        await b.until(lambda: "@after:hs" in b.woken)
    finally:
        await a.bus.close()
        await b.bus.close()
