"""Worker roles (README "Scaling out"), with the processes in this test process over one
PostgreSQL database: a ``federation_inbound`` worker serves federation for a main
process that has no federation listener; the background jobs run on one process
even when two are configured for them, and move when that one stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from homeserver.app import RunningServer, start, start_worker
from tests.conftest import (
    ENGINE,
    ServerFactory,
    _create_pg_database,
    free_port,
    make_config,
    stop_or_explain,
    write_data_dir,
)
from tests.federation.rooms_support import q, send_text, timeline_bodies
from tests.helpers import Api

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")

ROUNDS = 600  # bounded re-reads, 0.05 s apart

Starter = Callable[..., Awaitable[tuple[RunningServer, RunningServer]]]


@pytest.fixture
async def main_and_worker(tmp_path: Path) -> AsyncIterator[Starter]:
    """Start a main process and one worker ``w`` on a fresh database; both stopped after."""
    servers: list[RunningServer] = []
    drops: list[Callable[[], Awaitable[None]]] = []

    async def starter(server_name: str, worker: dict[str, Any], **raw: Any) -> Any:
        url, drop = await _create_pg_database()
        drops.append(drop)
        write_data_dir(tmp_path, server_name)
        config = make_config(tmp_path, url, server_name=server_name, workers={"w": worker}, **raw)
        servers.append(await start(config))
        servers.append(await start_worker(config, "w"))
        return servers[0], servers[1]

    starter.servers = servers  # type: ignore[attr-defined]  # a test may stop one itself
    yield starter
    for server in reversed(servers):
        await stop_or_explain(server)
    for drop in drops:
        await drop()


async def test_a_federation_inbound_worker_serves_federation(
    main_and_worker: Starter, make_server: ServerFactory
) -> None:
    fed_port = free_port()
    name = f"127.0.0.1:{fed_port}"
    main, worker = await main_and_worker(
        name,
        {"client_port": free_port(), "federation_port": fed_port, "roles": ["federation_inbound"]},
        main_roles=["client", "federation_sender", "background"],
    )
    assert main.federation_port == 0  # main opens no federation listener
    assert worker.client_port == 0 and worker.federation_port == fed_port
    remote = await make_server(federated=True)
    async with Api(main.client_url) as a, Api(remote.client_url) as b:
        alice = await a.register("alice")
        bob = await b.register("bob")
        r = await a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        # make_join / send_join / keys: all answered by the worker's listener.
        r = await b.post(f"/join/{q(room_id)}?server_name={q(name)}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        await send_text(b, bob, room_id, "through the inbound worker")
        bodies: list[str] = []
        for _ in range(ROUNDS):
            bodies = await timeline_bodies(a, alice, room_id)
            if "through the inbound worker" in bodies:
                break
            await asyncio.sleep(0.05)
        assert "through the inbound worker" in bodies


def upkeep_running(server: RunningServer) -> bool:
    return any(t.get_name() == "media-upkeep" and not t.done() for t in server.hs.background)


async def test_background_jobs_run_on_one_process_and_move_when_it_stops(
    main_and_worker: Starter,
) -> None:
    # Configured wrongly on purpose: main and the worker both have the background role.
    main, worker = await main_and_worker(
        "localhost",
        {"client_port": free_port(), "roles": ["client", "background"]},
        worker_lease_ms=1000,
    )
    # main started first and holds the lease; the worker, up after it, runs nothing.
    assert upkeep_running(main) and not upkeep_running(worker)
    main_and_worker.servers.remove(main)  # type: ignore[attr-defined]
    await main.stop()  # a clean stop releases the lease: the worker takes it next round
    for _ in range(ROUNDS):
        if upkeep_running(worker):
            break
        await asyncio.sleep(0.05)
    assert upkeep_running(worker)


async def test_a_sender_only_worker_sends_what_main_persists(
    main_and_worker: Starter, make_server: ServerFactory
) -> None:
    fed_port = free_port()
    name = f"127.0.0.1:{fed_port}"
    main, worker = await main_and_worker(
        name,
        {"roles": ["federation_sender"]},
        main_roles=["client", "federation_inbound", "background"],
        federation_listener={"bind": "127.0.0.1", "port": fed_port},
    )
    assert worker.client_port == 0 and worker.federation_port == 0  # no listener at all
    remote = await make_server(federated=True)
    async with Api(main.client_url) as a, Api(remote.client_url) as b:
        alice = await a.register("alice")
        bob = await b.register("bob")
        r = await a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        r = await b.post(f"/join/{q(room_id)}?server_name={q(name)}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        await send_text(a, alice, room_id, "persisted by main, sent by the worker")
        bodies: list[str] = []
        for _ in range(ROUNDS):
            bodies = await timeline_bodies(b, bob, room_id)
            if "persisted by main, sent by the worker" in bodies:
                break
            await asyncio.sleep(0.05)
        assert "persisted by main, sent by the worker" in bodies
    # main never sent a transaction: it owns no shard.
    assert main.hs.federation is not None and main.hs.federation.relay is not None
    assert main.hs.federation.relay.sender._destinations == {}


def evaluating(server: RunningServer) -> bool:
    return server.hs.sync_area.push_evaluator.running


async def test_push_evaluation_moves_with_the_background_lease(
    main_and_worker: Starter,
) -> None:
    """Push rules are evaluated by the background lease's holder only; when it stops,
    the next holder resumes from the cursor, and counts stay exact on the survivor."""
    main, worker = await main_and_worker(
        "localhost",
        {"client_port": free_port(), "roles": ["client", "background"]},
        worker_lease_ms=1000,
    )
    assert evaluating(main) and not evaluating(worker)
    async with Api(worker.client_url) as w:
        alice = await w.register("alice")
        bob = await w.register("bob")
        r = await w.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        assert (await w.post(f"/join/{q(room_id)}", {}, token=bob.access_token)).status == 200
        await send_text(w, alice, room_id, "while main evaluates")
        main_and_worker.servers.remove(main)  # type: ignore[attr-defined]
        await main.stop()
        await send_text(w, alice, room_id, "after main stopped")
        for _ in range(ROUNDS):
            if evaluating(worker):
                break
            await asyncio.sleep(0.05)
        assert evaluating(worker)
        r = await w.get("/sync", token=bob.access_token)
        assert r.status == 200, r.body
        unread = r.body["rooms"]["join"][room_id]["unread_notifications"]
        assert unread == {"notification_count": 2, "highlight_count": 0}
