"""Kill -9 a worker in the middle of a send load (issue 16).

Server A runs as three real processes over one PostgreSQL database: ``main``
(client API, federation listener, background jobs) and two workers ``w1`` and
``w2``, each serving the client API and sending one shard of the federation
outbox. Server B is another Myelin, in this test process, in the room. Clients
send messages spread over A's three processes; mid-load, the worker that owns
B's sender shard is killed with SIGKILL. Then:

- every send that was answered 200 is persisted and seen by /sync on main;
- a send that failed on the dead worker, retried with the same transaction id on
  another process, succeeds (once: the same event id if the first had committed);
- B receives every event, those sent after the kill included: the other worker
  took over the dead one's shard when its lease expired (``worker_lease_ms``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import secrets
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from homeserver.process_roles import shard_of
from homeserver.scaleout import sender_lease
from tests.conftest import ENGINE, ServerFactory, write_data_dir
from tests.federation.rooms_support import q
from tests.helpers import Api, User
from tests.integration.test_cli import _wait_until_up, database_url, free_port
from tests.integration.test_workers_cli import run, stop

__all__ = ["database_url"]  # the fixture, imported for this module's tests

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")

LEASE_MS = 2000  # short, so the takeover happens within seconds
SENDERS = 3  # concurrent clients
PER_SENDER = 12
KILL_AFTER = 9  # acknowledged sends before the kill
# Every event since the last batch, no gap (more than the whole load).
WHOLE_TIMELINE = json.dumps({"room": {"timeline": {"limit": 200}}})
ROUNDS = 600  # bounded re-reads while something is on its way (0.05 s apart)


def write_config(data_dir: Path, url: str) -> tuple[Path, str, dict[str, int]]:
    """Server A's homeserver.yaml: main is no sender, so each worker owns a shard."""
    fed_port = free_port()
    name = f"127.0.0.1:{fed_port}"
    write_data_dir(data_dir, name)
    ports = {"main": free_port(), "w1": free_port(), "w2": free_port()}
    raw: dict[str, Any] = {
        "server_name": name,
        "data_dir": str(data_dir),
        "database_url": url,
        "client_listener": {"bind": "127.0.0.1", "port": ports["main"]},
        "federation_listener": {"bind": "127.0.0.1", "port": fed_port},
        "registration": {"enabled": True},
        "rate_limits": {"enabled": False},
        "federation": {"insecure_local": True, "min_retry_ms": 200, "max_retry_ms": 1000},
        "main_roles": ["client", "federation_inbound", "background"],
        "workers": {
            w: {"client_port": ports[w], "roles": ["client", "federation_sender"]}
            for w in ("w1", "w2")
        },
        "worker_lease_ms": LEASE_MS,
    }
    config = data_dir / "homeserver.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config, name, ports


async def lease_holder(url: str, lease: str, wanted: str) -> str | None:
    """The process (by name) that holds ``lease``, read until it is ``wanted`` (bounded)."""
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        holder = None
        for _ in range(ROUNDS):
            owner = await conn.fetchval(
                "SELECT owner FROM leases WHERE name = $1"
                " AND expires_ms > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
                lease,
            )
            holder = None if owner is None else str(owner).partition(".")[0]
            if holder == wanted:
                break
            await asyncio.sleep(0.05)
        return holder
    finally:
        await conn.close()


async def send_with_retry(
    apis: dict[str, Api], order: list[str], failed: list[str], user: User, room_id: str, body: str
) -> str:
    """PUT one message on the first process of ``order``; on a refused or dropped
    connection (the process is dead; the client does not know) retry the same
    transaction id on the next one. Each failed attempt's process goes to ``failed``."""
    txn = secrets.token_hex(6)
    path = f"/rooms/{q(room_id)}/send/m.room.message/{txn}"
    for attempt in range(10):
        name = order[attempt % len(order)]
        try:
            r = await apis[name].put(
                path, {"msgtype": "m.text", "body": body}, token=user.access_token
            )
        except (aiohttp.ClientError, OSError):
            failed.append(name)
            continue  # the next process gets the same transaction id
        assert r.status == 200, r.body
        return str(r.body["event_id"])
    raise AssertionError(f"no process accepted {body}")


async def test_kill_a_sender_worker_mid_load(
    tmp_path: Path, database_url: str | None, make_server: ServerFactory
) -> None:
    assert database_url is not None
    config, a_name, ports = write_config(tmp_path / "a", database_url)
    remote = await make_server(federated=True)
    b_name = remote.hs.config.server_name
    # The worker whose shard B's server falls in (senders sorted by name: w1, w2).
    victim = ("w1", "w2")[shard_of(b_name, 2)]
    survivor = "w2" if victim == "w1" else "w1"
    procs: dict[str, asyncio.subprocess.Process] = {}
    try:
        procs["main"] = await run(config, log=tmp_path / "main.log")
        await _wait_until_up(f"http://127.0.0.1:{ports['main']}", procs["main"])
        for w in ("w1", "w2"):
            procs[w] = await run(config, "--worker", w, log=tmp_path / f"{w}.log")
        for w in ("w1", "w2"):
            await _wait_until_up(f"http://127.0.0.1:{ports[w]}", procs[w])
        # The load starts once each worker holds its own shard (the first one up
        # took both, and hands the other's back within a lease time or two).
        shard = sender_lease(shard_of(b_name, 2), 2)
        assert await lease_holder(database_url, shard, victim) == victim
        urls = {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}
        async with contextlib.AsyncExitStack() as stack:
            apis = {n: await stack.enter_async_context(Api(u)) for n, u in urls.items()}
            b = await stack.enter_async_context(Api(remote.client_url))
            await run_load(apis, b, a_name, victim, survivor, procs)
        assert await lease_holder(database_url, shard, survivor) == survivor
        assert await stop(procs[survivor]) == 0
        assert await stop(procs["main"]) == 0
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def run_load(
    apis: dict[str, Api],
    b: Api,
    a_name: str,
    victim: str,
    survivor: str,
    procs: dict[str, asyncio.subprocess.Process],
) -> None:
    alice = await apis["main"].register("alice")
    bob = await b.register("bob")
    r = await apis[survivor].post(
        "/createRoom", {"preset": "public_chat"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    r = await b.post(f"/join/{q(room_id)}?server_name={q(a_name)}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    first = await apis["main"].get("/sync", token=alice.access_token)
    assert first.status == 200, first.body

    acked: dict[str, str] = {}  # body -> event id, for every send answered 200
    after_kill: set[str] = set()
    failed: list[str] = []
    killed = asyncio.Event()
    names = ["main", "w1", "w2"]

    async def sender(i: int) -> None:
        # Each client starts on another process and goes round all three.
        order = names[i % 3 :] + names[: i % 3]
        for n in range(PER_SENDER):
            body = f"c{i}-m{n}"
            was_killed = killed.is_set()
            event_id = await send_with_retry(
                apis, order[n % 3 :] + order[: n % 3], failed, alice, room_id, body
            )
            acked[body] = event_id
            if was_killed:
                after_kill.add(body)
            if len(acked) == KILL_AFTER and not killed.is_set():
                procs[victim].send_signal(signal.SIGKILL)
                await procs[victim].wait()
                killed.set()

    await asyncio.gather(*(sender(i) for i in range(SENDERS)))
    assert killed.is_set() and procs[victim].returncode == -signal.SIGKILL
    assert len(acked) == SENDERS * PER_SENDER and after_kill
    assert len(set(acked.values())) == len(acked)  # one event per message, none merged
    # Sends went on to hit the dead worker, and were retried elsewhere with success.
    assert failed and set(failed) == {victim}

    # Every acknowledged event is persisted and /sync on main serves it, once.
    seen: list[str] = []
    since = first.body["next_batch"]
    for _ in range(ROUNDS):
        params = {"since": since, "timeout": "0", "filter": WHOLE_TIMELINE}
        r = await apis["main"].get("/sync", token=alice.access_token, params=params)
        assert r.status == 200, r.body
        since = r.body["next_batch"]
        room = r.body.get("rooms", {}).get("join", {}).get(room_id, {})
        assert not room.get("timeline", {}).get("limited"), "a gap in /sync"
        seen += [e["event_id"] for e in room.get("timeline", {}).get("events", [])]
        if set(acked.values()) <= set(seen):
            break
        await asyncio.sleep(0.05)
    assert set(acked.values()) <= set(seen)
    assert len(seen) == len(set(seen))

    # B receives every event, those sent after the kill too (the shard was taken over).
    bodies: list[str] = []
    for _ in range(ROUNDS):
        r = await b.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=100", token=bob.access_token)
        assert r.status == 200, r.body
        chunk = [e for e in r.body["chunk"] if e["type"] == "m.room.message"]
        bodies = [e["content"].get("body") for e in chunk]
        if set(acked) <= set(bodies):
            break
        await asyncio.sleep(0.05)
    missing = sorted(set(acked) - set(bodies))
    assert not missing, f"B lacks {len(missing)} events, e.g. {missing[:3]}"
    assert len(bodies) == len(set(bodies))  # at least once over the wire, once in the room
    assert {e for e in itertools.chain(bodies) if e in after_kill} == after_kill
