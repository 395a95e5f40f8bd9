"""A homeserver run as a main process and a worker (PostgreSQL) federating with another.

Users of server A use only the worker's client API; the main process alone
serves federation and sends the outbox: what the worker persists must still
reach server B (the worker announces its outbox rows over the signal bus),
and what B sends must wake a long-poll on the worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from homeserver.app import RunningServer, start_worker
from tests.conftest import ENGINE, ServerFactory, free_port, stop_or_explain
from tests.federation.rooms_support import q, send_text, timeline_bodies
from tests.helpers import Api, Reply
from tests.processes import ROUNDS, WAIT_S

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")


@pytest.fixture
async def main_and_worker(
    make_server: ServerFactory,
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    main = await make_server(federated=True, workers={"w1": {"client_port": free_port()}})
    worker = await start_worker(main.hs.config, "w1")
    try:
        yield main, worker
    finally:
        await stop_or_explain(worker)


async def bodies_eventually(api: Api, token: str, room_id: str, want: str) -> list[str]:
    bodies: list[str] = []
    for _ in range(ROUNDS):
        r = await api.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=50", token=token)
        bodies = [e["content"].get("body") for e in r.body.get("chunk", [])]
        if want in bodies:
            break
        await asyncio.sleep(0.05)
    return bodies


async def test_worker_sends_reach_the_remote_and_remote_sends_wake_the_worker(
    main_and_worker: tuple[RunningServer, RunningServer], make_server: ServerFactory
) -> None:
    main, worker = main_and_worker
    remote = await make_server(federated=True)
    async with Api(worker.client_url) as w, Api(remote.client_url) as b:
        alice = await w.register("alice")
        bob = await b.register("bob")
        r = await w.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        a_name = main.hs.config.server_name
        r = await b.post(f"/join/{q(room_id)}?server_name={q(a_name)}", {}, token=bob.access_token)
        assert r.status == 200, r.body

        # Persisted by the worker, sent by the main process.
        await send_text(w, alice, room_id, "from the worker")
        bodies = await bodies_eventually(b, bob.access_token, room_id, "from the worker")
        assert "from the worker" in bodies
        # The worker never sent anything itself: no destination task was ever made there.
        worker_fed = worker.hs.federation
        assert worker_fed is not None and worker_fed.relay is not None
        assert worker_fed.relay.sender._destinations == {}

        # Received by the main process, wakes a long-poll on the worker.
        first = await w.get("/sync", token=alice.access_token)
        assert first.status == 200, first.body
        since = first.body["next_batch"]

        def long_poll(since: str) -> asyncio.Task[Reply]:
            params = {"since": since, "timeout": "120000"}
            return asyncio.create_task(w.get("/sync", token=alice.access_token, params=params))

        poll = long_poll(since)
        await asyncio.sleep(0.2)  # let the poll start waiting (correct either way)
        await send_text(b, bob, room_id, "from the remote")
        seen: list[str] = []
        for _ in range(5):  # another wake-up (a receipt, presence) may come first
            woken = await asyncio.wait_for(poll, WAIT_S)
            assert woken.status == 200, woken.body
            joined = woken.body.get("rooms", {}).get("join", {})
            events = joined.get(room_id, {}).get("timeline", {}).get("events", [])
            seen += [e["content"].get("body") for e in events]
            if "from the remote" in seen:
                break
            poll = long_poll(woken.body["next_batch"])
        assert "from the remote" in seen
        assert await timeline_bodies(w, alice, room_id) == ["from the worker", "from the remote"]


async def typing_seen(api: Api, token: str, room_id: str, user_id: str) -> bool:
    """Whether ``user_id`` shows as typing in ``room_id`` in a fresh /sync of ``token``."""
    for _ in range(ROUNDS):
        r = await api.get("/sync", token=token)
        room = r.body.get("rooms", {}).get("join", {}).get(room_id, {})
        for event in room.get("ephemeral", {}).get("events", []):
            if event["type"] == "m.typing" and user_id in event["content"]["user_ids"]:
                return True
        await asyncio.sleep(0.05)
    return False


async def test_typing_crosses_between_a_worker_and_the_remote(
    main_and_worker: tuple[RunningServer, RunningServer], make_server: ServerFactory
) -> None:
    main, worker = main_and_worker
    remote = await make_server(federated=True)
    async with Api(worker.client_url) as w, Api(remote.client_url) as b:
        alice = await w.register("alice")
        bob = await b.register("bob")
        r = await w.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_id = r.body["room_id"]
        a_name = main.hs.config.server_name
        r = await b.post(f"/join/{q(room_id)}?server_name={q(a_name)}", {}, token=bob.access_token)
        assert r.status == 200, r.body
        # Taken by the worker, sent by the main process (once: only the taker queues it).
        r = await w.put(
            f"/rooms/{q(room_id)}/typing/{q(alice.user_id)}",
            {"typing": True, "timeout": 60000},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        assert await typing_seen(b, bob.access_token, room_id, alice.user_id)
        # Received by the main process, served by the worker.
        r = await b.put(
            f"/rooms/{q(room_id)}/typing/{q(bob.user_id)}",
            {"typing": True, "timeout": 60000},
            token=bob.access_token,
        )
        assert r.status == 200, r.body
        assert await typing_seen(w, alice.access_token, room_id, bob.user_id)
    queued = await main.hs.db.fetchval(
        "SELECT count(*) FROM federation_outbox WHERE edu_type = 'm.typing'"
    )
    assert int(queued) <= 1  # sent (deleted) or waiting once, never once per process
