"""Shared fixtures: real Myelin servers on 127.0.0.1, on SQLite or PostgreSQL.

``MYELIN_TEST_DB`` selects the engine (``sqlite``, the default, or
``postgres``); for PostgreSQL ``MYELIN_TEST_PG_DSN`` names an administrative
connection, and every server gets a fresh database of its own.

Tests marked ``@pytest.mark.spread`` run twice: as written (``1proc``) and with
their first server made of three processes behind a proxy that spreads requests
at random (``3proc``, PostgreSQL only; see tests/spread.py).
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import RunningServer, start
from homeserver.config import Config, parse_config
from homeserver.events.keys import encode_signing_key_line, generate_signing_key
from homeserver.tls import write_self_signed
from tests.helpers import Api
from tests.ports import free_port
from tests.spread import WORKERS, seed_for, start_spread

ENGINE = os.environ.get("MYELIN_TEST_DB", "sqlite")
PG_DSN = os.environ.get("MYELIN_TEST_PG_DSN", "")


def pytest_report_header() -> str:
    return f"myelin storage engine: {ENGINE}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("spread") and "make_server" in metafunc.fixturenames:
        metafunc.parametrize("processes", [1, 3], indirect=True, ids=["1proc", "3proc"])


@pytest.fixture
def processes(request: pytest.FixtureRequest) -> int:
    """How many processes the first server of the test runs as (1 unless ``spread``)."""
    count = int(getattr(request, "param", 1))
    if count > 1 and ENGINE != "postgres":
        pytest.skip("several processes need PostgreSQL")
    return count


async def _create_pg_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    import asyncpg

    if not PG_DSN:
        pytest.fail("MYELIN_TEST_DB=postgres needs MYELIN_TEST_PG_DSN")
    name = "myelin_test_" + secrets.token_hex(6)
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    finally:
        await conn.close()
    base, _, _ = PG_DSN.rpartition("/")

    async def drop() -> None:
        c = await asyncpg.connect(PG_DSN)
        try:
            await c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await c.close()

    return f"{base}/{name}", drop


@asynccontextmanager
async def fresh_database(data_dir: Path) -> AsyncIterator[str]:
    """The URL of a new database on the engine under test, for a test that starts (and
    restarts) servers itself: on PostgreSQL dropped on exit, on SQLite a file in
    ``data_dir``."""
    if ENGINE != "postgres":
        yield f"sqlite:///{data_dir / 'homeserver.db'}"
        return
    url, drop = await _create_pg_database()
    try:
        yield url
    finally:
        await drop()


def write_data_dir(data_dir: Path, server_name: str) -> None:
    """Signing key and TLS certificate, as generate-config writes them."""
    data_dir.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key("a_" + secrets.token_hex(2))
    (data_dir / "signing.key").write_text(encode_signing_key_line(key) + "\n")
    write_self_signed(server_name, data_dir / "tls.crt", data_dir / "tls.key")


def make_config(data_dir: Path, database_url: str, **overrides: Any) -> Config:
    raw: dict[str, Any] = {
        "server_name": overrides.pop("server_name", "localhost"),
        "data_dir": str(data_dir),
        "database_url": database_url,
        "client_listener": {"bind": "127.0.0.1", "port": 0},
        "federation_listener": {"bind": "127.0.0.1", "port": 0},
        "registration": {"enabled": True},
        "rate_limits": {"enabled": False},
        "federation": {"insecure_local": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return parse_config(raw, data_dir)


ServerFactory = Callable[..., Awaitable[RunningServer]]

STOP_TIMEOUT_S = 60


async def stop_or_explain(server: RunningServer) -> None:
    """Stop a server; if that hangs, fail with the stack of every task still running."""
    try:
        await asyncio.wait_for(server.stop(), STOP_TIMEOUT_S)
    except TimeoutError:
        stacks = []
        for task in asyncio.all_tasks():
            frames = task.get_stack()
            where = " <- ".join(f"{f.f_code.co_filename}:{f.f_lineno}" for f in frames)
            stacks.append(f"{task.get_name()}: {where}")
        pytest.fail(f"server did not stop within {STOP_TIMEOUT_S} s; tasks:\n" + "\n".join(stacks))


@pytest.fixture
def running_servers() -> list[RunningServer]:
    """The servers ``make_server`` stops at the end (``restart_server`` keeps it current)."""
    return []


@pytest.fixture
async def make_server(
    tmp_path: Path,
    running_servers: list[RunningServer],
    processes: int,
    request: pytest.FixtureRequest,
) -> AsyncIterator[ServerFactory]:
    """Start real servers; every one is stopped and its database dropped afterwards.
    With ``processes`` 3 the first one is a main process and two workers behind a
    spreading proxy (tests/spread.py)."""
    running = running_servers
    drops: list[Callable[[], Awaitable[None]]] = []
    counter = 0

    async def factory(*, federated: bool = False, **overrides: Any) -> RunningServer:
        """``federated=True``: server name ``127.0.0.1:PORT`` with PORT its federation port."""
        nonlocal counter
        counter += 1
        if federated:
            port = free_port()
            overrides.setdefault("server_name", f"127.0.0.1:{port}")
            overrides["federation_listener"] = {"bind": "127.0.0.1", "port": port}
        data_dir = tmp_path / f"server{counter}"
        write_data_dir(data_dir, overrides.get("server_name", "localhost"))
        if ENGINE == "postgres":
            url, drop = await _create_pg_database()
            drops.append(drop)
        else:
            url = f"sqlite:///{data_dir / 'homeserver.db'}"
        if processes > 1 and counter == 1:
            overrides["workers"] = {n: {"client_port": free_port()} for n in WORKERS}
            config = make_config(data_dir, url, **overrides)
            server: RunningServer = await start_spread(config, seed_for(request.node.nodeid))
        else:
            server = await start(make_config(data_dir, url, **overrides))
        running.append(server)
        return server

    yield factory
    for server in running:
        await stop_or_explain(server)
    for drop in drops:
        await drop()


RestartFn = Callable[[RunningServer], Awaitable[RunningServer]]


@pytest.fixture
def restart_server(running_servers: list[RunningServer]) -> RestartFn:
    """Stop a server and start it again on the same configuration: same data dir and
    database, same server name and federation port (the client port may change)."""

    async def restart(server: RunningServer) -> RunningServer:
        await stop_or_explain(server)
        running_servers.remove(server)
        again = await start(server.hs.config)
        running_servers.append(again)
        return again

    return restart


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    return await make_server()


@pytest.fixture
async def api(server: RunningServer) -> AsyncIterator[Api]:
    async with Api(server.client_url) as client:
        yield client
