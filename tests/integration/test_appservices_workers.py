"""Application services with worker processes (PostgreSQL): the main process alone sends
the transactions, and what a worker takes in (events, to-device messages) reaches the
service because the signal bus wakes the main process's senders."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from mautrix.types import EventType, UserID

from homeserver.app import RunningServer
from tests.conftest import ENGINE, ServerFactory, free_port
from tests.helpers import Api
from tests.integration.appservice_bridge import AS_TOKEN, Bridge, registration, write_registration
from tests.processes import main_and_worker

pytestmark = pytest.mark.skipif(ENGINE != "postgres", reason="worker processes need PostgreSQL")

ROUNDS = 600  # x 0.05 s: a bound for "it arrives", not a measurement


@pytest.fixture
async def worker_and_bridge(
    make_server: ServerFactory, tmp_path: Path
) -> AsyncIterator[tuple[RunningServer, Bridge]]:
    port = free_port()
    path = write_registration(tmp_path, registration(port))
    async with main_and_worker(
        make_server,
        app_service_config_files=[path],
        app_service_min_retry_ms=50,
        app_service_max_retry_ms=400,
    ) as (_, worker):
        # The service talks to the worker only; the main process only sends it transactions.
        bridge = Bridge(worker.client_url, port)
        await bridge.start()
        try:
            yield worker, bridge
        finally:
            await bridge.stop()


async def test_what_a_worker_takes_in_reaches_the_service(
    worker_and_bridge: tuple[RunningServer, Bridge],
) -> None:
    worker, bridge = worker_and_bridge
    async with Api(worker.client_url) as api:
        r = await api.post(
            "/register",
            {"type": "m.login.application_service", "username": "bridge_wes", "device_id": "WD"},
            token=AS_TOKEN,
        )
        assert r.status == 200, r.body
        wes = UserID("@bridge_wes:localhost")
        alice = await api.register("alice")
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_id = r.body["room_id"]
        await bridge.appservice.intent.user(wes).join_room_by_id(room_id)
        r = await api.put(
            "/sendToDevice/org.example.w/1",
            {"messages": {wes: {"WD": {"via": "worker"}}}},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        sent = []
        for i in range(3):
            r = await api.put(
                f"/rooms/{room_id}/send/m.room.message/w{i}",
                {"msgtype": "m.text", "body": f"from the worker {i}"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
            sent.append(r.body["event_id"])
        got = [await bridge.next_event(lambda e: e.type == EventType.ROOM_MESSAGE) for _ in sent]
        assert [e.event_id for e in got] == sent
        # The to-device message arrives too (in its own transaction or with the messages).
        to_device: list[dict[str, object]] = []
        for _ in range(ROUNDS):
            to_device = [
                m for _, b in bridge.accepted for m in b.get("de.sorunome.msc2409.to_device", [])
            ]
            if to_device:
                break
            await asyncio.sleep(0.05)
        assert [(m["to_device_id"], m["content"]) for m in to_device] == [("WD", {"via": "worker"})]


async def test_typing_receipts_and_presence_taken_by_a_worker_reach_the_service(
    worker_and_bridge: tuple[RunningServer, Bridge],
) -> None:
    """Only the main process sends transactions: a worker hands it receipts and presence,
    and typing is applied by every process (the main one queues it itself)."""
    worker, bridge = worker_and_bridge
    async with Api(worker.client_url) as api:
        wes = UserID("@bridge_wes:localhost")
        await bridge.appservice.intent.user(wes).ensure_registered()
        alice = await api.register("alice")
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_id = r.body["room_id"]
        await bridge.appservice.intent.user(wes).join_room_by_id(room_id)
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.message/r1",
            {"msgtype": "m.text", "body": "read me"},
            token=alice.access_token,
        )
        event_id = r.body["event_id"]
        r = await api.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 30000},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        r = await api.post(
            f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice.access_token
        )
        assert r.status == 200, r.body
        r = await api.put(
            f"/presence/{alice.user_id}/status",
            {"presence": "online", "status_msg": "via a worker"},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        wanted = {EventType.TYPING, EventType.RECEIPT, EventType.PRESENCE}
        seen: set[EventType] = set()
        for _ in range(50):  # every EDU is awaited with a timeout; this bounds the count
            edu = await bridge.ephemeral_next()
            if edu.type == EventType.TYPING and alice.user_id in edu.content.user_ids:
                assert edu.room_id == room_id
                seen.add(EventType.TYPING)
            elif edu.type == EventType.RECEIPT:
                seen.add(EventType.RECEIPT)
            elif edu.type == EventType.PRESENCE and edu.sender == alice.user_id:
                seen.add(EventType.PRESENCE)
            if seen == wanted:
                break
        assert seen == wanted
