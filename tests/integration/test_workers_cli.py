"""`myelin run --worker NAME`: a main process and a worker as real processes over one
PostgreSQL database, and SQLite refusing workers with one clear line."""

from __future__ import annotations

import asyncio
import secrets
import signal
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ENGINE
from tests.helpers import Api
from tests.integration.test_cli import (
    _env,
    _wait_until_up,
    assert_one_line_error,
    database_url,
    free_port,
    generate,
    myelin,
)

__all__ = ["database_url"]  # the fixture, imported for this module's tests

WAIT_S = 30.0  # a bound for "it arrives", not a measurement
ROUNDS = 300


async def run(config: Path, *extra: str, log: Path | None = None) -> asyncio.subprocess.Process:
    """`myelin run --config C EXTRA...`; its stderr (the log) goes to ``log`` if given."""
    err = asyncio.subprocess.DEVNULL if log is None else log.open("ab")
    try:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "homeserver",
            "run",
            "--config",
            str(config),
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err,
            env=_env(),
        )
    finally:
        if log is not None and not isinstance(err, int):
            err.close()


def add_worker(config: Path, name: str) -> int:
    raw = yaml.safe_load(config.read_text())
    port = free_port()
    raw.setdefault("workers", {})[name] = {"client_port": port}
    config.write_text(yaml.safe_dump(raw))
    return port


async def stop(proc: asyncio.subprocess.Process) -> int:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return -1
    return proc.returncode


async def test_sqlite_refuses_workers(tmp_path: Path) -> None:
    if ENGINE == "postgres":
        pytest.skip("the SQLite refusal (generate-config's default database)")
    data_dir = tmp_path / "data"
    await generate(data_dir, None)
    config = data_dir / "homeserver.yaml"
    rc, _, err = await myelin("run", "--config", str(config), "--worker", "worker1")
    assert_one_line_error(rc, err, "--worker worker1", "PostgreSQL", "SQLite")
    add_worker(config, "worker1")
    rc, _, err = await myelin("run", "--config", str(config))
    assert_one_line_error(rc, err, "workers", "PostgreSQL")


async def test_main_and_a_worker_serve_one_homeserver(
    tmp_path: Path, database_url: str | None
) -> None:
    if database_url is None:
        pytest.skip("worker processes need PostgreSQL")
    data_dir = tmp_path / "data"
    main_port, _ = await generate(data_dir, database_url, "--open-registration")
    config = data_dir / "homeserver.yaml"
    worker_port = add_worker(config, "worker1")
    rc, _, err = await myelin("run", "--config", str(config), "--worker", "nobody")
    assert_one_line_error(rc, err, "--worker nobody", "worker1")
    main = await run(config)
    worker: asyncio.subprocess.Process | None = None
    try:
        main_url = f"http://127.0.0.1:{main_port}"
        await _wait_until_up(main_url, main)
        worker = await run(config, "--worker", "worker1")
        worker_url = f"http://127.0.0.1:{worker_port}"
        await _wait_until_up(worker_url, worker)
        async with Api(main_url) as m, Api(worker_url) as w:
            # Registered on the main process, used on the worker.
            alice = await m.register("alice")
            token = alice.access_token
            r = await w.post("/createRoom", {"preset": "private_chat"}, token=token)
            assert r.status == 200, r.body
            room_id = r.body["room_id"]
            first = await m.get("/sync", token=token)
            assert first.status == 200, first.body
            # A long-poll on the main process wakes for a send on the worker.
            poll = asyncio.create_task(
                m.get(
                    "/sync",
                    token=token,
                    params={"since": first.body["next_batch"], "timeout": "120000"},
                )
            )
            await asyncio.sleep(0.2)  # let the poll start waiting (correct either way)
            r = await w.put(
                f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(4)}",
                {"msgtype": "m.text", "body": "from the worker"},
                token=token,
            )
            assert r.status == 200, r.body
            event_id = r.body["event_id"]
            woken = await asyncio.wait_for(poll, WAIT_S)
            assert woken.status == 200, woken.body
            timeline = woken.body["rooms"]["join"][room_id]["timeline"]["events"]
            assert event_id in [e["event_id"] for e in timeline]
            # Logged out on the worker (which has not seen the token yet either way),
            # refused on the main process, which had it cached.
            assert (await m.get("/account/whoami", token=token)).status == 200
            assert (await w.post("/logout", {}, token=token)).status == 200
            refused = await m.get("/account/whoami", token=token)
            for _ in range(ROUNDS):
                if refused.status == 401:
                    break
                await asyncio.sleep(0.05)
                refused = await m.get("/account/whoami", token=token)
            assert refused.status == 401 and refused.errcode == "M_UNKNOWN_TOKEN", refused.body
        assert await stop(worker) == 0
        assert await stop(main) == 0
    finally:
        for proc in (worker, main):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_generate_config_with_workers(tmp_path: Path, database_url: str | None) -> None:
    """`generate-config --workers N`: N generic workers on the client port + 1..N, each
    started by name and serving the whole client API; SQLite refuses the option."""
    if database_url is None:
        data_dir = tmp_path / "sqlite"
        rc, _, err = await myelin(
            "generate-config", "--server-name", "cli.test", "--data-dir", str(data_dir),
            "--workers", "2",
        )  # fmt: skip
        assert_one_line_error(rc, err, "--workers", "PostgreSQL")
        return
    data_dir = tmp_path / "data"
    main_port, _ = await generate(data_dir, database_url, "--open-registration", "--workers", "2")
    config = data_dir / "homeserver.yaml"
    raw = yaml.safe_load(config.read_text())
    assert raw["workers"] == {
        "worker1": {"client_port": main_port + 1},
        "worker2": {"client_port": main_port + 2},
    }
    main = await run(config)
    worker: asyncio.subprocess.Process | None = None
    try:
        main_url = f"http://127.0.0.1:{main_port}"
        await _wait_until_up(main_url, main)
        worker = await run(config, "--worker", "worker2")
        worker_url = f"http://127.0.0.1:{main_port + 2}"
        await _wait_until_up(worker_url, worker)
        async with Api(main_url) as m, Api(worker_url) as w:
            bob = await w.register("bob")  # registered on the worker, known to main
            r = await m.get("/account/whoami", token=bob.access_token)
            assert r.status == 200 and r.body["user_id"] == bob.user_id, r.body
        assert await stop(worker) == 0
        assert await stop(main) == 0
    finally:
        for proc in (worker, main):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
