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

from homeserver.app import RunningServer
from tests.conftest import ENGINE, ServerFactory
from tests.federation.rooms_support import q, send_text, timeline_bodies
from tests.helpers import Api
from tests.processes import (
    ROUNDS,
    WAIT_S,
    long_poll,
    main_and_worker,
    public_room_joined_from,
    until,
)

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")


@pytest.fixture
async def servers(
    make_server: ServerFactory,
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    async with main_and_worker(make_server, federated=True) as pair:
        yield pair


async def test_worker_sends_reach_the_remote_and_remote_sends_wake_the_worker(
    servers: tuple[RunningServer, RunningServer], make_server: ServerFactory
) -> None:
    main, worker = servers
    remote = await make_server(federated=True)
    async with Api(worker.client_url) as w, Api(remote.client_url) as b:
        alice = await w.register("alice")
        bob = await b.register("bob")
        room_id = await public_room_joined_from(w, alice, b, bob, main.hs.config.server_name)

        # Persisted by the worker, sent by the main process.
        await send_text(w, alice, room_id, "from the worker")

        async def arrived() -> bool:
            return "from the worker" in await timeline_bodies(b, bob, room_id)

        assert await until(arrived)
        # The worker never sent anything itself: no destination task was ever made there.
        worker_fed = worker.hs.federation
        assert worker_fed is not None and worker_fed.relay is not None
        assert worker_fed.relay.sender._destinations == {}

        # Received by the main process, wakes a long-poll on the worker.
        first = await w.get("/sync", token=alice.access_token)
        assert first.status == 200, first.body
        poll = long_poll(w, alice, first.body["next_batch"])
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
            poll = long_poll(w, alice, woken.body["next_batch"])
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
    servers: tuple[RunningServer, RunningServer], make_server: ServerFactory
) -> None:
    main, worker = servers
    remote = await make_server(federated=True)
    async with Api(worker.client_url) as w, Api(remote.client_url) as b:
        alice = await w.register("alice")
        bob = await b.register("bob")
        room_id = await public_room_joined_from(w, alice, b, bob, main.hs.config.server_name)
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
