"""Worker roles (README "Scaling out"), with the processes in this test process over one
PostgreSQL database: a ``federation_inbound`` worker serves federation for a main
process that has no federation listener; the background jobs run on one process
even when two are configured for them, and move when that one stops."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.conftest import ENGINE, ServerFactory, free_port
from tests.federation.rooms_support import q, send_text, timeline_bodies
from tests.helpers import Api
from tests.processes import main_and_worker, public_room_joined_from, until

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")

ROUNDS = 600  # bounded re-reads, 0.05 s apart


async def test_a_federation_inbound_worker_serves_federation(make_server: ServerFactory) -> None:
    fed_port = free_port()
    name = f"127.0.0.1:{fed_port}"
    async with main_and_worker(
        make_server,
        {"client_port": free_port(), "federation_port": fed_port, "roles": ["federation_inbound"]},
        server_name=name,
        main_roles=["client", "federation_sender", "background"],
    ) as (main, worker):
        assert main.federation_port == 0  # main opens no federation listener
        assert worker.client_port == 0 and worker.federation_port == fed_port
        remote = await make_server(federated=True)
        async with Api(main.client_url) as a, Api(remote.client_url) as b:
            alice = await a.register("alice")
            bob = await b.register("bob")
            # make_join / send_join / keys: all answered by the worker's listener.
            room_id = await public_room_joined_from(a, alice, b, bob, name)
            await send_text(b, bob, room_id, "through the inbound worker")

            async def arrived() -> bool:
                return "through the inbound worker" in await timeline_bodies(a, alice, room_id)

            assert await until(arrived, ROUNDS)


def upkeep_running(server: RunningServer) -> bool:
    return any(t.get_name() == "media-upkeep" and not t.done() for t in server.hs.background)


async def test_background_jobs_run_on_one_process_and_move_when_it_stops(
    make_server: ServerFactory, running_servers: list[RunningServer]
) -> None:
    # Configured wrongly on purpose: main and the worker both have the background role.
    async with main_and_worker(
        make_server,
        {"client_port": free_port(), "roles": ["client", "background"]},
        worker_lease_ms=1000,
    ) as (main, worker):
        # main started first and holds the lease; the worker, up after it, runs nothing.
        assert upkeep_running(main) and not upkeep_running(worker)
        running_servers.remove(main)
        await main.stop()  # a clean stop releases the lease: the worker takes it next round
        assert await until(lambda: upkeep_running(worker), ROUNDS)


async def test_a_sender_only_worker_sends_what_main_persists(make_server: ServerFactory) -> None:
    fed_port = free_port()
    name = f"127.0.0.1:{fed_port}"
    async with main_and_worker(
        make_server,
        {"roles": ["federation_sender"]},
        server_name=name,
        main_roles=["client", "federation_inbound", "background"],
        federation_listener={"bind": "127.0.0.1", "port": fed_port},
    ) as (main, worker):
        assert worker.client_port == 0 and worker.federation_port == 0  # no listener at all
        remote = await make_server(federated=True)
        async with Api(main.client_url) as a, Api(remote.client_url) as b:
            alice = await a.register("alice")
            bob = await b.register("bob")
            room_id = await public_room_joined_from(a, alice, b, bob, name)
            sent = "persisted by main, sent by the worker"
            await send_text(a, alice, room_id, sent)

            async def arrived() -> bool:
                return sent in await timeline_bodies(b, bob, room_id)

            assert await until(arrived, ROUNDS)
        # main never sent a transaction: it owns no shard.
        assert main.hs.federation is not None and main.hs.federation.relay is not None
        assert main.hs.federation.relay.sender._destinations == {}


def evaluating(server: RunningServer) -> bool:
    return server.hs.sync_area.push_evaluator.running


async def test_push_evaluation_moves_with_the_background_lease(
    make_server: ServerFactory, running_servers: list[RunningServer]
) -> None:
    """Push rules are evaluated by the background lease's holder only; when it stops,
    the next holder resumes from the cursor, and counts stay exact on the survivor."""
    async with (
        main_and_worker(
            make_server,
            {"client_port": free_port(), "roles": ["client", "background"]},
            worker_lease_ms=1000,
        ) as (main, worker),
        Api(worker.client_url) as w,
    ):
        assert evaluating(main) and not evaluating(worker)
        alice = await w.register("alice")
        bob = await w.register("bob")
        r = await w.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        assert (await w.post(f"/join/{q(room_id)}", {}, token=bob.access_token)).status == 200
        await send_text(w, alice, room_id, "while main evaluates")
        running_servers.remove(main)
        await main.stop()
        await send_text(w, alice, room_id, "after main stopped")
        assert await until(lambda: evaluating(worker), ROUNDS)
        r = await w.get("/sync", token=bob.access_token)
        assert r.status == 200, r.body
        unread = r.body["rooms"]["join"][room_id]["unread_notifications"]
        assert unread == {"notification_count": 2, "highlight_count": 0}
