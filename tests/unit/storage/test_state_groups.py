"""The de-duplicated state store: a group's state equals the folded deltas, at any depth."""

from __future__ import annotations

import random
from pathlib import Path

from homeserver.rooms.store.state_store import StateStore
from homeserver.storage.database import connect
from homeserver.storage.migrate import migrate


async def test_state_at_every_group_matches_expected_map(tmp_path: Path) -> None:
    db = await connect(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        await migrate(db)
        await db.execute(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts)"
            " VALUES ('!r:x', '12', '@a:x', 0)"
        )
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
        for g, state in expected.items():
            assert await fresh.state_at_group(g) == state
            keys = [1, 5, 17, 39]
            assert await StateStore(db).state_keys_at_group(g, keys) == {
                k: state[k] for k in keys if k in state
            }
        # Deltas are bounded and snapshots exist: storage is not a copy per group.
        depths = [r[0] for r in await db.fetchall("SELECT delta_depth FROM state_groups")]
        assert max(depths) == 6 and depths.count(0) >= 300 // 7
        rows = await db.fetchval("SELECT COUNT(*) FROM state_group_entries")
        assert rows < sum(len(s) for s in expected.values()) / 3
    finally:
        await db.close()
