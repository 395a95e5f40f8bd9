"""The federation sender alone: back-off, transaction batching, coalescing, a dead peer
not blocking others. The outbox is a real SQLite database; the transport is a
recorder that answers like a peer (or fails like a dead one)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest

from federation.errors import FederationError
from federation.outbox_store import OutboxStore
from federation.sender import MAX_EDUS, MAX_PDUS, Backoff, FederationSender, build_transaction
from homeserver.clock import Clock
from homeserver.e2ee.to_device_store import ToDeviceStore
from homeserver.storage.database import Database, connect
from homeserver.storage.migrate import migrate

ME = "me.example"


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    b = Backoff(1000, 60_000, random.Random(7))
    for failures, base in [(1, 1000), (2, 2000), (3, 4000), (6, 32_000), (7, 60_000), (50, 60_000)]:
        delays = [b.delay_ms(failures) for _ in range(200)]
        assert all(base // 2 <= d <= base for d in delays), (failures, min(delays), max(delays))
        assert len(set(delays)) > 20  # jittered, not a constant
    # A peer's retry_after_ms is honoured, within the cap.
    assert b.delay_ms(1, retry_after_ms=30_000) >= 30_000
    assert b.delay_ms(1, retry_after_ms=10**9) == 60_000


def test_build_transaction_refuses_oversized_batches() -> None:
    body = build_transaction(ME, 5, [{"a": 1}], [("m.typing", {"x": 1})])
    assert body == {
        "origin": ME,
        "origin_server_ts": 5,
        "pdus": [{"a": 1}],
        "edus": [{"edu_type": "m.typing", "content": {"x": 1}}],
    }
    with pytest.raises(ValueError):
        build_transaction(ME, 5, [{}] * (MAX_PDUS + 1), [])
    with pytest.raises(ValueError):
        build_transaction(ME, 5, [], [("t", {})] * (MAX_EDUS + 1))


class Transport:
    """Records transactions; destinations in ``down`` fail like an unreachable server."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.down: set[str] = set()
        self.gate: asyncio.Event | None = None

    async def put_json(
        self, destination: str, path: str, body: Any, *, timeout_s: float = 60.0
    ) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        if destination in self.down:
            raise FederationError(destination, "cannot connect")
        self.sent.append((destination, path, body))
        return {"pdus": {}}


@pytest.fixture
async def db(tmp_path: Path) -> Any:
    database = await connect(f"sqlite:///{tmp_path / 'db.sqlite'}")
    await migrate(database)
    yield database
    await database.close()


def make_sender(db: Database, transport: Transport, **kw: Any) -> FederationSender:
    return FederationSender(
        ME,
        OutboxStore(db),
        ToDeviceStore(db),
        transport,
        Clock(),
        min_retry_ms=kw.pop("min_retry_ms", 20),
        max_retry_ms=kw.pop("max_retry_ms", 100),
        **kw,
    )


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


async def test_batches_hold_at_most_50_pdus_and_100_edus_in_order(db: Database) -> None:
    transport = Transport()
    transport.gate = asyncio.Event()  # hold sending until everything is queued
    sender = make_sender(db, transport)
    for i in range(120):
        await sender.enqueue_pdu(["peer.example", ME], {"n": i})
    for i in range(230):
        await sender.enqueue_edu("peer.example", "m.test", {"n": i})
    transport.gate.set()
    await until(lambda: sum(len(b["edus"]) for _, _, b in transport.sent) == 230)
    await until(lambda: not sender.busy_destinations())  # the last batch acknowledged too
    await sender.close()
    sizes = [(len(b["pdus"]), len(b["edus"])) for _, _, b in transport.sent]
    assert all(p <= MAX_PDUS and e <= MAX_EDUS for p, e in sizes)
    assert sum(p for p, _ in sizes) == 120
    assert [p["n"] for _, _, b in transport.sent for p in b["pdus"]] == list(range(120))
    assert [e["content"]["n"] for _, _, b in transport.sent for e in b["edus"]] == list(range(230))
    assert {d for d, _, _ in transport.sent} == {"peer.example"}  # never to ourselves
    assert len({path for _, path, _ in transport.sent}) == len(transport.sent)  # fresh txn ids
    assert await OutboxStore(db).count("peer.example") == 0


async def test_coalescing_keeps_only_the_latest_unsent_edu(db: Database) -> None:
    transport = Transport()
    transport.gate = asyncio.Event()
    sender = make_sender(db, transport)
    for n, typing in enumerate((True, False, True)):
        await sender.enqueue_edu("peer.example", "m.typing", {"typing": typing, "n": n}, key="r|u")
    await sender.enqueue_edu("peer.example", "m.typing", {"typing": False, "n": 3}, key="r|other")
    transport.gate.set()

    def sent_ns() -> list[int]:
        return [e["content"]["n"] for _, _, b in transport.sent for e in b["edus"]]

    await until(lambda: {2, 3} <= set(sent_ns()))
    await sender.close()
    # The sender's task may take a batch (n=0, or n=1 if n=0 was already replaced
    # when it looked) before the rest is queued: that one is in flight and cannot be
    # taken back. Every EDU superseded while unsent is never sent.
    assert sorted(sent_ns()) in ([2, 3], [0, 2, 3], [1, 2, 3])


async def test_dead_peer_backs_off_without_blocking_others_then_catches_up(
    db: Database,
) -> None:
    transport = Transport()
    transport.down.add("dead.example")
    sender = make_sender(db, transport)
    await sender.enqueue_edu("dead.example", "m.test", {"n": 1})
    await sender.enqueue_edu("live.example", "m.test", {"n": 2})
    await until(lambda: any(d == "live.example" for d, _, _ in transport.sent))
    await until(lambda: sender.failures("dead.example") >= 3)
    assert await OutboxStore(db).count("dead.example") == 1  # kept until acknowledged
    transport.down.clear()
    await until(lambda: any(d == "dead.example" for d, _, _ in transport.sent))
    paths = {p for d, p, _ in transport.sent if d == "dead.example"}
    assert len(paths) == 1
    assert sender.failures("dead.example") == 0
    await until(lambda: sender._destinations["dead.example"].task is None)  # idle: no task
    assert await OutboxStore(db).count("dead.example") == 0
    await sender.close()


async def test_start_resumes_destinations_with_queued_rows(db: Database) -> None:
    await OutboxStore(db).add_edu("peer.example", "m.test", {"n": 1}, None, 1)
    transport = Transport()
    sender = make_sender(db, transport)
    await sender.start()
    await until(lambda: len(transport.sent) == 1)
    await sender.close()
    assert transport.sent[0][2]["edus"] == [{"edu_type": "m.test", "content": {"n": 1}}]


async def test_global_limit_on_concurrent_transactions(db: Database) -> None:
    in_flight = 0
    peak = 0

    class Slow(Transport):
        async def put_json(
            self, destination: str, path: str, body: Any, *, timeout_s: float = 60.0
        ) -> Any:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.02)
            in_flight -= 1
            self.sent.append((destination, path, body))
            return {}

    transport = Slow()
    sender = make_sender(db, transport, max_concurrent=3)
    for i in range(10):
        await sender.enqueue_edu(f"peer{i}.example", "m.test", {"n": i})
    await until(lambda: len(transport.sent) == 10)
    await sender.close()
    assert peak == 3


async def test_a_sender_shard_sends_only_what_it_owns_and_announces_the_rest(
    db: Database,
) -> None:
    """Several processes: a destination another process owns is announced (``forward``),
    never sent here; once owned (a shard gained), ``start`` resumes it from the rows."""
    transport = Transport()
    sender = make_sender(db, transport)
    mine = {"mine.example"}
    announced: list[str] = []
    sender.owns = lambda destination: destination in mine
    sender.forward = announced.extend
    await sender.enqueue_edu("mine.example", "m.test", {"n": 1})
    await sender.enqueue_edu("theirs.example", "m.test", {"n": 2})
    await until(lambda: len(transport.sent) == 1)
    assert transport.sent[0][0] == "mine.example"
    assert announced == ["theirs.example"]
    # A wake that arrives from the bus is never announced again (no echo).
    sender.wake_owned(["theirs.example"])
    assert announced == ["theirs.example"] and "theirs.example" not in sender.busy_destinations()
    mine.add("theirs.example")  # the other process died; its shard was taken over
    await sender.start()
    await until(lambda: len(transport.sent) == 2)
    await until(lambda: not sender.busy_destinations())
    await sender.close()
    assert transport.sent[1][0] == "theirs.example"
    assert await OutboxStore(db).count("theirs.example") == 0


async def test_a_sender_that_loses_its_lease_stops_and_the_next_one_resends_the_same_txn(
    db: Database,
) -> None:
    """The new owner rebuilds the batch that was in flight under the same transaction
    id (made from its rows), so the receiver answers it from its record of that id."""
    attempted: list[str] = []

    class Dead(Transport):
        async def put_json(
            self, destination: str, path: str, body: Any, *, timeout_s: float = 60.0
        ) -> Any:
            attempted.append(path)
            raise FederationError(destination, "cannot connect")

    dead = Dead()
    owned = True
    first = make_sender(db, dead)
    first.owns = lambda _destination: owned
    await first.enqueue_edu("peer.example", "m.test", {"n": 1})
    await until(lambda: first.failures("peer.example") >= 1)
    owned = False  # its lease ran out: it stops before its next attempt
    await until(lambda: "peer.example" not in first.busy_destinations())
    attempts = first.failures("peer.example")
    await asyncio.sleep(0.3)  # several back-off periods (20-100 ms): no attempt made
    assert first.failures("peer.example") == attempts
    live = Transport()
    second = make_sender(db, live)  # another process, which took the shard over
    await second.start()
    await until(lambda: len(live.sent) == 1)
    await until(lambda: not second.busy_destinations())  # acknowledged, rows deleted
    await second.close()
    await first.close()
    assert await OutboxStore(db).count("peer.example") == 0
    # Every attempt, the dead owner's and the new owner's, carried one transaction id.
    assert set(attempted) == {live.sent[0][1]}


def test_transaction_ids_follow_the_rows_and_their_content() -> None:
    from federation.sender import transaction_id

    content = [[{"event_id": "$a"}], [("m.typing", {"typing": True})]]
    same = transaction_id([1, 2], [7], content)
    assert transaction_id([1, 2], [7], content) == same  # any process, any time
    assert transaction_id([1, 2], [], content) != same
    assert transaction_id([1, 3], [7], content) != same
    # A restored database hands out id 1 again, for other content: another id.
    assert transaction_id([1, 2], [7], [[{"event_id": "$b"}], []]) != same
