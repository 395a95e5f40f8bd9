"""A real `myelin run` subprocess that a test may SIGKILL and start again on the same data."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Victim:
    """``myelin run --config CONFIG``; its stderr goes (appended) to ``log_path``."""

    def __init__(self, data_dir: Path, raw_config: dict[str, Any]) -> None:
        self.data_dir = data_dir
        self.config_path = data_dir / "homeserver.yaml"
        self.config_path.write_text(yaml.safe_dump(raw_config))
        self.log_path = data_dir / "myelin.log"
        port = raw_config["client_listener"]["port"]
        self.client_url = f"http://127.0.0.1:{port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def start(self) -> None:
        """Start it and wait until the client API answers."""
        assert self.proc is None
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"----- start {self.starts}\n".encode())
            log.flush()
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "homeserver",
                "run",
                "--config",
                str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
                env=_env(),
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    break
                try:
                    async with session.get(self.client_url + "/_matrix/client/versions") as r:
                        if r.status == 200:
                            return
                except (aiohttp.ClientError, TimeoutError):
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError(f"myelin run did not come up:\n{self.log_tail()}")

    async def kill(self) -> None:
        """SIGKILL: no clean-up of any kind runs."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 30)
        self.proc = None
