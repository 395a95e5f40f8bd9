"""Two full resyncs of one remote user's device list at once both succeed (no 500).

A /keys/query can resync a user while the background resync of the same user runs; on
PostgreSQL the second's DELETE used to miss the first's uncommitted rows and its INSERT
then hit their primary key."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from federation.device_list_store import RemoteDevice, RemoteDeviceListStore
from homeserver.storage.database import Database, connect
from homeserver.storage.migrate import migrate
from tests.conftest import fresh_database

USER = "@bob:remote.example"


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with fresh_database(tmp_path) as url:
        db = await connect(url)
        try:
            await migrate(db)
            yield db
        finally:
            await db.close()


async def test_concurrent_full_resyncs_of_one_user_both_commit(db: Database) -> None:
    store = RemoteDeviceListStore(db)

    async def resync(stream_id: int, device_ids: list[str]) -> None:
        devices = [RemoteDevice(USER, d, None, None) for d in device_ids]
        async with db.transaction() as txn:
            await store.replace_user(txn, USER, stream_id, devices, {}, 1000)
            await asyncio.sleep(0.2)  # hold the transaction open: the other one runs now

    await asyncio.gather(resync(1, ["A", "B"]), resync(2, ["A", "B", "C"]))

    rows = await db.fetchall(
        "SELECT device_id FROM federation_remote_devices WHERE user_id = $1 ORDER BY device_id",
        USER,
    )
    kept = [r[0] for r in rows]
    # The one that committed last wins whole; never a mix of the two lists.
    assert kept in (["A", "B"], ["A", "B", "C"])
    stream = await store.stream_ids([USER])
    assert stream[USER] == (2 if kept == ["A", "B", "C"] else 1)
