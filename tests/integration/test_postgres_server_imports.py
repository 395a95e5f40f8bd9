"""A server on PostgreSQL never loads SQLite: ``sqlite3`` (and aiosqlite) are imported
only by the SQLite engine, which saves a PostgreSQL server ~1 MiB of resident memory
(issue 15, peak RSS; benchmarks/README.md, 2026-12-07). Checked in a fresh interpreter
that starts a whole server, migrations and background jobs included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ENGINE

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="a server on PostgreSQL")

PROBE = """
import asyncio, pathlib, sys, tempfile
from tests.conftest import fresh_database, make_config, write_data_dir
from homeserver.app import start

async def main():
    d = pathlib.Path(tempfile.mkdtemp())
    write_data_dir(d, "localhost")
    async with fresh_database(d) as url:
        server = await start(make_config(d, url))
        try:
            await asyncio.sleep(0.5)  # let the background jobs take their first step
            print(server.hs.db.engine, *(m in sys.modules for m in ("sqlite3", "aiosqlite")))
        finally:
            await server.stop()

asyncio.run(main())
"""


def test_a_postgresql_server_does_not_load_sqlite() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MYELIN_TEST_DB": "postgres"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["postgres", "False", "False"]
