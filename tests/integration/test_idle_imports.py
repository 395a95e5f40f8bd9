"""An idle server does not load what only some features need (issue 15 #9, resident
memory; benchmarks/README.md, rss-idle): sliding sync until its first request, URL
previews while they are off, the scale-out machinery without workers, application-service
senders without services, ``zipfile`` (migrations are read from the package directory),
``getpass`` (only the commands that prompt), and frozenlist's C++ extension (the CLI
module selects its pure-Python form, so libstdc++ is never mapped). Checked in a fresh
interpreter that imports the CLI module and starts a whole server on the engine under
test, migrations and background jobs included; then one sliding sync request loads
sliding sync and is answered (the feature's own tests: ``test_sliding_sync_*.py``,
``test_media_preview.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.conftest import ENGINE, fresh_database, write_data_dir

ROOT = Path(__file__).resolve().parents[2]

DEFERRED = (
    "frozenlist._frozenlist",
    "zipfile",
    "homeserver.sync.sliding.service",
    "homeserver.media.preview",
    "html.parser",
    "homeserver.scaleout",
    "homeserver.cross_process",
    "homeserver.streams.pg_bus",
    "homeserver.appservices.sender",
    # asyncpg itself loads getpass (getpass.getuser() for its default user).
    *(("getpass",) if ENGINE == "sqlite" else ()),
)

PROBE = """
import asyncio, json, sys
import homeserver.__main__  # the CLI module first, as `myelin run` starts
import aiohttp
from homeserver.app import start
from homeserver.config import load_config

DEFERRED = %r
SLIDING = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"

def loaded():
    return [m for m in DEFERRED if m in sys.modules]

async def main(path):
    server = await start(load_config(path))
    try:
        await asyncio.sleep(0.5)  # let the background jobs take their first step
        idle = loaded()
        async with aiohttp.ClientSession() as s:
            body = {"username": "idle", "password": "pw-idle-1", "auth": {"type": "m.login.dummy"}}
            async with s.post(server.client_url + "/_matrix/client/v3/register", json=body) as r:
                assert r.status == 200, await r.text()
                token = (await r.json())["access_token"]
            lists = {"all": {"ranges": [[0, 9]], "timeline_limit": 1, "required_state": []}}
            async with s.post(
                server.client_url + SLIDING,
                json={"lists": lists},
                params={"timeout": "0"},
                headers={"Authorization": "Bearer " + token},
            ) as r:
                answer = {"status": r.status, "has_pos": "pos" in await r.json()}
        print(json.dumps({"idle": idle, "sliding": answer, "after": loaded()}))
    finally:
        await server.stop()

asyncio.run(main(sys.argv[1]))
"""


async def test_an_idle_server_loads_no_deferred_module_until_its_feature_is_used(
    tmp_path: Path,
) -> None:
    write_data_dir(tmp_path, "localhost")
    async with fresh_database(tmp_path) as url:
        raw = {
            "server_name": "localhost",
            "data_dir": str(tmp_path),
            "database_url": url,
            "client_listener": {"bind": "127.0.0.1", "port": 0},
            "federation_listener": {"bind": "127.0.0.1", "port": 0},
            "registration": {"enabled": True},
            "rate_limits": {"enabled": False},
            "federation": {"insecure_local": True},
        }
        config = tmp_path / "homeserver.yaml"
        config.write_text(yaml.safe_dump(raw))
        done = subprocess.run(
            [sys.executable, "-c", PROBE % (DEFERRED,), str(config)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["idle"] == []
    assert seen["sliding"] == {"status": 200, "has_pos": True}
    assert "homeserver.sync.sliding.service" in seen["after"]
