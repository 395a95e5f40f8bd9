"""Two `myelin run` on one database: the second refuses to start with one clear line,
the first keeps serving, and the lock dies with its process (SIGKILL included)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import yaml

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

__all__ = ["database_url"]  # the fixture, imported for this module's tests


def second_config(data_dir: Path) -> tuple[Path, int]:
    """The same configuration (same database) on other ports."""
    raw = yaml.safe_load((data_dir / "homeserver.yaml").read_text())
    port = free_port()
    raw["client_listener"]["port"] = port
    raw["federation_listener"]["port"] = free_port()
    path = data_dir / "second.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, port


async def test_second_run_on_one_database_refuses(tmp_path: Path, database_url: str | None) -> None:
    data_dir = tmp_path / "data"
    client_port, _ = await generate(data_dir, database_url, "--open-registration")
    second, second_port = second_config(data_dir)
    first = await spawn_run(data_dir / "homeserver.yaml")
    try:
        url = f"http://127.0.0.1:{client_port}"
        await _wait_until_up(url, first)
        rc, _, err = await myelin("run", "--config", str(second))
        assert_one_line_error(rc, err, "in use by another Myelin process", "--worker")
        # The first one never noticed.
        async with Api(url) as api:
            alice = await api.register("alice")
            assert (await api.get("/account/whoami", token=alice.access_token)).status == 200
        # register-user only adds a row: it still works beside the running server.
        rc, out, err = await myelin(
            "register-user", "--config", str(second), "bob", "--password", "pw-bob"
        )
        assert rc == 0 and "@bob:cli.test" in out, err
        # A process killed without any clean-up leaves no lock behind.
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.wait(), 30)
        again = await spawn_run(second)
        try:
            url = f"http://127.0.0.1:{second_port}"
            await _wait_until_up(url, again)
            async with Api(url) as api:
                assert (await api.login("alice", alice.password)).status == 200
                assert (await api.login("bob", "pw-bob")).status == 200
            again.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(again.wait(), 30) == 0
        finally:
            if again.returncode is None:
                again.kill()
                await again.wait()
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
