"""The `myelin` command line, run for real as a subprocess (`python -m homeserver ...`)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from homeserver.app import HomeServer
from homeserver.config import load_config
from tests.conftest import ENGINE, _create_pg_database
from tests.helpers import Api
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


async def myelin(*args: str, timeout: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homeserver",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=_env(),
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def assert_one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == 1, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
async def database_url(tmp_path: Path) -> AsyncIterator[str | None]:
    """None for SQLite (generate-config's default); a fresh database on PostgreSQL."""
    if ENGINE != "postgres":
        yield None
        return
    url, drop = await _create_pg_database()
    yield url
    await drop()


async def generate(data_dir: Path, database_url: str | None, *extra: str) -> tuple[int, int]:
    client_port, fed_port = free_port(), free_port()
    args = [
        "generate-config",
        "--server-name",
        "cli.test",
        "--data-dir",
        str(data_dir),
        "--client-port",
        str(client_port),
        "--federation-port",
        str(fed_port),
        *extra,
    ]
    if database_url is not None:
        args += ["--database-url", database_url]
    rc, out, err = await myelin(*args)
    assert rc == 0, err
    assert str(data_dir / "homeserver.yaml") in out
    return client_port, fed_port


async def test_generate_config(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    client_port, fed_port = await generate(
        data_dir,
        None,
        "--open-registration",
        "--registration-shared-secret",
        "s3cret",
        "--no-rate-limits",
        "--allow-guests",
    )
    for name in ("homeserver.yaml", "signing.key", "tls.crt", "tls.key"):
        assert (data_dir / name).is_file(), name
    for name in ("homeserver.yaml", "signing.key", "tls.key"):
        assert stat.S_IMODE((data_dir / name).stat().st_mode) == 0o600, name
    key_line = (data_dir / "signing.key").read_text().split()
    assert key_line[0] == "ed25519" and key_line[1].startswith("a_") and len(key_line) == 3
    assert (data_dir / "tls.crt").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY-----" in (data_dir / "tls.key").read_text()

    raw = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
    assert raw["server_name"] == "cli.test"
    config = load_config(data_dir / "homeserver.yaml")
    assert config.client_listener.port == client_port
    assert config.federation_listener.port == fed_port
    assert config.client_listener.bind == "127.0.0.1"
    assert config.database_url == f"sqlite:///{data_dir / 'homeserver.db'}"
    assert config.registration.enabled is True
    assert config.registration.shared_secret == "s3cret"
    assert config.rate_limits.enabled is False
    assert config.registration.allow_guests is True
    assert config.federation.insecure_local is False

    # Defaults: closed registration, no guests, rate limits on.
    other = tmp_path / "other"
    await generate(other, "postgresql://u@127.0.0.1:5432/db")
    config = load_config(other / "homeserver.yaml")
    assert config.registration.enabled is False and config.registration.shared_secret is None
    assert config.registration.allow_guests is False
    assert config.rate_limits.enabled is True
    assert config.database_url == "postgresql://u@127.0.0.1:5432/db"

    # No overwrite without --force; the files stay as they were.
    before = {n: (data_dir / n).read_bytes() for n in ("homeserver.yaml", "signing.key")}
    rc, _, err = await myelin(
        "generate-config", "--server-name", "cli.test", "--data-dir", str(data_dir)
    )
    assert_one_line_error(rc, err, "homeserver.yaml", "--force")
    assert {n: (data_dir / n).read_bytes() for n in before} == before
    rc, _, err = await myelin(
        "generate-config", "--server-name", "new.test", "--data-dir", str(data_dir), "--force"
    )
    assert rc == 0, err
    assert load_config(data_dir / "homeserver.yaml").server_name == "new.test"
    assert (data_dir / "signing.key").read_bytes() != before["signing.key"]

    rc, _, err = await myelin(
        "generate-config", "--server-name", "bad name!", "--data-dir", str(tmp_path / "x")
    )
    assert_one_line_error(rc, err, "--server-name")
    assert not (tmp_path / "x" / "homeserver.yaml").exists()


async def test_bad_config_exits_with_one_line(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await generate(data_dir, None)
    path = data_dir / "homeserver.yaml"
    good = yaml.safe_load(path.read_text())

    written = 0

    def write(**changes: object) -> str:
        nonlocal written
        written += 1
        bad = tmp_path / f"bad{written}.yaml"
        bad.write_text(yaml.safe_dump({**good, "data_dir": str(data_dir), **changes}))
        return str(bad)

    cases: list[tuple[str, tuple[str, ...]]] = [
        (write(colour="blue"), ("colour", "unknown")),
        (write(client_listener={"bind": "127.0.0.1", "port": "eighty"}), ("client_listener.port",)),
        (write(registration={"enabled": "yes"}), ("registration.enabled",)),
        (
            write(rate_limits={"login": {"address": {"burst_count": 1, "speed": 2}}}),
            ("rate_limits.login.address.speed",),
        ),
        (write(server_name=None), ("server_name",)),
        (str(tmp_path / "missing.yaml"), ("not found", "missing.yaml")),
        (write(database_url="postgresql://myelin@127.0.0.1:1/x"), ("PostgreSQL",)),
        (write(database_url="mysql://x"), ("database_url",)),
    ]
    (tmp_path / "invalid.yaml").write_text("server_name: [unclosed\n")
    cases.append((str(tmp_path / "invalid.yaml"), ("invalid YAML",)))
    for path, needles in cases:
        rc, _, err = await myelin("run", "--config", path)
        assert_one_line_error(rc, err, *needles)
    # register-user reads the config the same way.
    for path, needles in (cases[0], cases[6]):
        rc, _, err = await myelin("register-user", "--config", path, "someone", "--password", "pw")
        assert_one_line_error(rc, err, *needles)


async def spawn_run(
    config_path: Path, *extra: str, stderr: Any = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """`myelin run --config C EXTRA...` as a real process, not yet up (see
    ``_wait_until_up``); its log goes to ``stderr`` (a file, PIPE or DEVNULL)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "homeserver",
        "run",
        "--config",
        str(config_path),
        *extra,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=stderr,
        env=_env(),
    )


async def _wait_until_up(url: str, proc: asyncio.subprocess.Process, rounds: int = 600) -> None:
    """Until ``url`` answers /versions; ``rounds`` x 0.05 s at most (600: 30 s, as several
    processes may be starting on two cores)."""
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            if proc.returncode is not None:
                break
            try:
                async with session.get(url + "/_matrix/client/versions") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("myelin run did not come up")


async def run_server(
    config_path: Path, client_port: int, check: Callable[[str], Awaitable[None]], sig: int
) -> tuple[int, str]:
    """Start `myelin run`, wait for it, run ``check`` against it, stop it with ``sig``."""
    proc = await spawn_run(config_path, stderr=asyncio.subprocess.PIPE)
    url = f"http://127.0.0.1:{client_port}"
    try:
        await _wait_until_up(url, proc)
        await check(url)
        proc.send_signal(sig)
        _, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_run_serves_and_stops_on_sigterm(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    client_port, fed_port = await generate(
        data_dir, database_url, "--open-registration", "--insecure-local-federation"
    )

    async def check(url: str) -> None:
        async with Api(url) as api:
            r = await api.get("/_matrix/client/versions")
            assert r.status == 200 and "v1.12" in r.body["versions"]
            alice = await api.register("alice")
            assert alice.user_id == "@alice:cli.test"
            assert (await api.get("/account/whoami", token=alice.access_token)).status == 200
        # The federation listener is up, with TLS.
        _, writer = await asyncio.open_connection("127.0.0.1", fed_port)
        writer.close()

    rc, err = await run_server(data_dir / "homeserver.yaml", client_port, check, signal.SIGTERM)
    assert rc == 0, err
    assert "Traceback" not in err
    assert "insecure" in err.lower() and "WARNING" in err
    assert "shutting down" in err and "stopped" in err
    # The port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", client_port))


async def test_register_user_then_login(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    client_port, _ = await generate(data_dir, database_url)
    config_path = data_dir / "homeserver.yaml"
    rc, out, err = await myelin(
        "register-user", "--config", str(config_path), "alice", "--password", "pw-alice"
    )
    assert rc == 0, err
    assert "@alice:cli.test" in out
    rc, out, err = await myelin(
        "register-user", "--config", str(config_path), "root", "--password", "pw-root", "--admin"
    )
    assert rc == 0, err
    assert "@root:cli.test" in out and "admin" in out
    rc, _, err = await myelin(
        "register-user", "--config", str(config_path), "alice", "--password", "again"
    )
    assert_one_line_error(rc, err, "alice")
    rc, _, err = await myelin("register-user", "--config", str(config_path), "bob")
    assert_one_line_error(rc, err, "--password")

    hs = await HomeServer.build(load_config(config_path))
    try:
        root = await hs.accounts.store.get_user("@root:cli.test")
        alice = await hs.accounts.store.get_user("@alice:cli.test")
        assert root is not None and root.is_admin
        assert alice is not None and not alice.is_admin
        assert await hs.accounts.store.get_user("@bob:cli.test") is None
    finally:
        await hs.close()

    async def check(url: str) -> None:
        async with Api(url) as api:
            for user, password in (("alice", "pw-alice"), ("root", "pw-root")):
                r = await api.login(user, password)
                assert r.status == 200, r.body
                assert r.body["user_id"] == f"@{user}:cli.test"
            assert (await api.login("alice", "again")).status == 403
            # Registration is closed by default.
            r = await api.post(
                "/register", {"username": "x", "password": "y", "auth": {"type": "m.login.dummy"}}
            )
            assert r.status == 403

    rc, err = await run_server(config_path, client_port, check, signal.SIGINT)
    assert rc == 0, err
    assert "insecure" not in err.lower()
