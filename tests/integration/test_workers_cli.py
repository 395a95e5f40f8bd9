"""`myelin run --worker NAME`: a main process and a worker as real processes over one
PostgreSQL database, and SQLite refusing workers with one clear line."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import ENGINE
from tests.helpers import Api
from tests.integration.test_cli import (
    _wait_until_up,
    assert_one_line_error,
    database_url,
    free_port,
    generate,
    myelin,
    spawn_run,
)
from tests.processes import eventually, new_room, send, woken_by

__all__ = ["database_url"]  # the fixture, imported for this module's tests


async def run(config: Path, *extra: str, log: Path | None = None) -> asyncio.subprocess.Process:
    """`myelin run --config C EXTRA...`; its stderr (the log) goes to ``log`` if given."""
    if log is None:
        return await spawn_run(config, *extra)
    with log.open("ab") as err:
        return await spawn_run(config, *extra, stderr=err)


@asynccontextmanager
async def processes(
    config: Path, ports: dict[str, int]
) -> AsyncIterator[dict[str, asyncio.subprocess.Process]]:
    """`myelin run` as ``main`` and `myelin run --worker NAME` for each other name of
    ``ports`` (its client port), in that order, each up before the next starts. The test
    stops them itself (``stop``) to check how they end; any still running at the end is
    killed."""
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        for name, port in ports.items():
            procs[name] = (
                await run(config) if name == "main" else await run(config, "--worker", name)
            )
            await _wait_until_up(f"http://127.0.0.1:{port}", procs[name])
        yield procs
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


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
    async with processes(config, {"main": main_port, "worker1": worker_port}) as procs:
        main_url = f"http://127.0.0.1:{main_port}"
        worker_url = f"http://127.0.0.1:{worker_port}"
        async with Api(main_url) as m, Api(worker_url) as w:
            # Registered on the main process, used on the worker.
            alice = await m.register("alice")
            token = alice.access_token
            room_id = await new_room(w, alice)
            first = await m.get("/sync", token=token)
            assert first.status == 200, first.body
            # A long-poll on the main process wakes for a send on the worker.
            woken, event_id = await woken_by(
                m,
                alice,
                first.body["next_batch"],
                lambda: send(w, alice, room_id, "from the worker"),
            )
            assert woken.status == 200, woken.body
            timeline = woken.body["rooms"]["join"][room_id]["timeline"]["events"]
            assert event_id in [e["event_id"] for e in timeline]
            # Logged out on the worker (which has not seen the token yet either way),
            # refused on the main process, which had it cached.
            assert (await m.get("/account/whoami", token=token)).status == 200
            assert (await w.post("/logout", {}, token=token)).status == 200
            refused = await eventually(
                lambda: m.get("/account/whoami", token=token), lambda r: r.status == 401
            )
            assert refused.status == 401 and refused.errcode == "M_UNKNOWN_TOKEN", refused.body
        assert await stop(procs["worker1"]) == 0
        assert await stop(procs["main"]) == 0


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
    async with processes(config, {"main": main_port, "worker2": main_port + 2}) as procs:
        main_url = f"http://127.0.0.1:{main_port}"
        worker_url = f"http://127.0.0.1:{main_port + 2}"
        async with Api(main_url) as m, Api(worker_url) as w:
            bob = await w.register("bob")  # registered on the worker, known to main
            r = await m.get("/account/whoami", token=bob.access_token)
            assert r.status == 200 and r.body["user_id"] == bob.user_id, r.body
        assert await stop(procs["worker2"]) == 0
        assert await stop(procs["main"]) == 0
