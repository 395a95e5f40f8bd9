"""The de-duplicated state store: a group's state equals the folded deltas, at any depth."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.rooms.store.state_store import StateStore
from homeserver.storage.database import Database, connect, count_statements
from homeserver.storage.migrate import migrate
from tests.conftest import fresh_database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """A migrated database of the engine under test, holding one room (the chain walks
    are written per engine: PostgreSQL's planner needs them shaped differently)."""
    async with fresh_database(tmp_path) as url:
        db = await connect(url)
        try:
            await migrate(db)
            await db.execute(
                "INSERT INTO rooms (room_id, room_version, creator, created_ts)"
                " VALUES ('!r:x', '12', '@a:x', 0)"
            )
            yield db
        finally:
            await db.close()


async def test_state_at_every_group_matches_expected_map(db: Database) -> None:
    store = StateStore(db, max_delta_depth=7)
    rng = random.Random(42)
    expected: dict[int, dict[int, int]] = {}
    current: dict[int, int] = {}
    group: int | None = None
    for step in range(300):
        delta: dict[int, int | None] = {}
        for _ in range(rng.randint(1, 3)):
            key = rng.randint(1, 40)
            if current and rng.random() < 0.05:
                delta[key] = None  # removal (state resolution can drop a key)
            else:
                delta[key] = 1000 + step * 10 + key
        async with db.transaction() as q:
            group = await store.create_group(q, 1, group, delta)
        for k, v in delta.items():
            if v is None:
                current.pop(k, None)
            else:
                current[k] = v
        expected[group] = dict(current)
    # Fresh store (no cache): every group reads back exactly.
    fresh = StateStore(db, max_delta_depth=7)
    keys = [1, 5, 17, 39]
    for g, state in expected.items():
        assert await fresh.state_at_group(g) == state
        assert await StateStore(db).state_keys_at_group(g, keys) == {
            k: state[k] for k in keys if k in state
        }
        async with db.transaction() as q:
            assert await StateStore(db).keys_at_group_in(q, g, keys) == {
                k: state[k] for k in keys if k in state
            }
    # Many groups at once (chains sharing ancestors), whole or only some keys.
    groups = sorted(expected)[::9]
    assert await StateStore(db).keys_at_groups(groups) == {g: expected[g] for g in groups}
    assert await StateStore(db).keys_at_groups(groups, keys) == {
        g: {k: expected[g][k] for k in keys if k in expected[g]} for g in groups
    }
    # Deltas are bounded and snapshots exist: storage is not a copy per group.
    depths = [r[0] for r in await db.fetchall("SELECT delta_depth FROM state_groups")]
    assert max(depths) == 6 and depths.count(0) >= 300 // 7
    rows = await db.fetchval("SELECT COUNT(*) FROM state_group_entries")
    assert rows < sum(len(s) for s in expected.values()) / 3


class _HeldReads:
    """The real database, but a read hands its rows over only when ``release`` is set:
    the rows are read first, so a test can change the data while they are in flight."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        rows = await self._db.fetchall(sql, *args)
        await self.release.wait()
        return list(rows)


async def test_a_load_in_flight_when_groups_change_is_not_cached(db: Database) -> None:
    """``forget_cached`` (a partial-state join's members merged into the groups in place)
    while a load is in flight: what that load read is the old state, so it must not be
    kept, or the next reader (an inbound PDU's auth) sees the room without the members."""
    held = _HeldReads(db)
    store = StateStore(held)  # type: ignore[arg-type]
    async with db.transaction() as q:
        root = await store.create_group(q, 1, None, {1: 100})
        group = await store.create_group(q, 1, root, {2: 200})
    loads: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.state_at_group(group),
        lambda: store.keys_at_groups([group]),
    ]
    for key, load in enumerate(loads, start=3):
        held.release.clear()
        loading = asyncio.get_running_loop().create_task(load())
        for _ in range(50):  # bounded: until the load holds its (old) rows
            await asyncio.sleep(0.01)
        async with db.transaction() as q:
            await store.add_to_roots(q, 1, {key: key * 100})
        store.forget_cached()
        held.release.set()
        await loading
        with count_statements() as reads:
            state = await store.state_at_group(group)
        assert state[key] == key * 100
        assert reads.total == 1  # read again, not the in-flight load's old rows


async def test_roots_are_the_snapshots_under_groups_in_one_statement(db: Database) -> None:
    """``roots``: every group's snapshot (itself when it is one), however deep its deltas
    (a partial-state merge completes a stored-ahead history's snapshots with it)."""
    store = StateStore(db, max_delta_depth=4)
    chain: list[int] = []
    group: int | None = None
    async with db.transaction() as q:
        for step in range(10):
            group = await store.create_group(q, 1, group, {step: 100 + step})
            chain.append(group)
        other = await store.create_group(q, 1, None, {1: 1})
        deltas = await store.create_group(q, 1, other, {2: 2})
    rows = await db.fetchall(
        "SELECT state_group FROM state_groups WHERE state_group IN"
        f" ({', '.join(str(g) for g in chain)}) AND prev_group IS NULL"
    )
    snapshots = {int(r["state_group"]) for r in rows}
    assert len(snapshots) >= 2  # the chain was cut into snapshots at depth 4
    async with db.transaction() as q:
        with count_statements() as counted:
            found = await store.roots(q, [chain[-1], chain[-2], deltas])
        under = {max(s for s in snapshots if s <= g) for g in chain[-2:]}
        assert found == under | {other}
        assert counted.total == 1
        assert await store.roots(q, [chain[0]]) == {chain[0]}
        assert await store.roots(q, []) == set()
