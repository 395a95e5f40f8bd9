"""SQLite's durability is the operator's choice (database.sqlite_synchronous), FULL by
default: every connection runs with it, and a value other than full or normal is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from homeserver.config import ConfigError, parse_config
from homeserver.storage.database import SqliteDatabase, connect

# PRAGMA synchronous answers with a number.
LEVELS = {"normal": 1, "full": 2}


@pytest.mark.parametrize("setting", ["full", "normal"])
async def test_every_connection_uses_the_setting(tmp_path: Path, setting: str) -> None:
    db = await connect(f"sqlite:///{tmp_path / 'db.sqlite'}", sqlite_synchronous=setting)
    try:
        assert isinstance(db, SqliteDatabase)
        # The writer (in a transaction) and the readers (one-shot SELECTs).
        async with db.transaction() as q:
            assert await q.fetchval("PRAGMA synchronous") == LEVELS[setting]
            assert await q.fetchval("PRAGMA journal_mode") == "wal"
        for _ in range(4):
            assert await db.fetchval("SELECT 1") == 1
        for conn in db._reader_conns:
            async with conn.execute("PRAGMA synchronous") as cur:
                assert (await cur.fetchone())[0] == LEVELS[setting]
    finally:
        await db.close()


def test_config_default_is_full_and_bad_values_are_refused(tmp_path: Path) -> None:
    base = {"server_name": "example.com", "data_dir": str(tmp_path)}
    assert parse_config(base, tmp_path).database.sqlite_synchronous == "full"
    chosen = parse_config({**base, "database": {"sqlite_synchronous": "normal"}}, tmp_path)
    assert chosen.database.sqlite_synchronous == "normal"
    for bad in ("off", "FULL", "extra", 2):
        with pytest.raises(ConfigError, match=r"database\.sqlite_synchronous"):
            parse_config({**base, "database": {"sqlite_synchronous": bad}}, tmp_path)
