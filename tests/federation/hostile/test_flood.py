"""A flood of hostile transactions (bounded: a fixed number, a few at a time) while a
local user keeps sending: every local send completes, the flood changes nothing,
each refused item is logged at most once. Latencies are printed, never asserted
(performance belongs to benchmarks/)."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from homeserver.events.keys import generate_signing_key
from tests.federation.hostile.support import Arena
from tests.federation.rooms_support import send_text

TRANSACTIONS = 24
AT_ONCE = 4
LOCAL_SENDS = 10  # at least; more while the flood lasts, up to MAX_LOCAL_SENDS
MAX_LOCAL_SENDS = 300


def hostile_transaction(arena: Arena, n: int) -> tuple[list[Any], list[Any]]:
    """50 PDUs with forged signatures and 100 typing EDUs for a room the peer is not in."""
    impostor = generate_signing_key(arena.peer.signing_key.version)
    pdus = []
    for i in range(50):
        fields = arena.peer.event_fields(arena.room, "m.room.message", arena.message(f"{n}-{i}"))
        pdus.append(arena.peer.build(arena.room.version, fields, key=impostor).pdu)
    typing = {
        "edu_type": "m.typing",
        "content": {
            "room_id": "!elsewhere:" + arena.name,
            "user_id": arena.peer.user("mallory"),
            "typing": True,
        },
    }
    return pdus, [typing] * 100


async def timed_sends(
    arena: Arena, count: int, label: str, until: asyncio.Future[Any] | None = None
) -> list[float]:
    """``count`` sends, and more while ``until`` is not done (at most MAX_LOCAL_SENDS)."""
    out: list[float] = []
    for i in range(MAX_LOCAL_SENDS):
        if i >= count and (until is None or until.done()):
            break
        started = time.monotonic()
        await send_text(arena.api, arena.alice, arena.room_id, f"{label} {i}")
        out.append((time.monotonic() - started) * 1000)
    return out


async def test_flood_of_transactions_leaves_local_users_served(arena: Arena) -> None:
    bodies = [hostile_transaction(arena, n) for n in range(TRANSACTIONS)]
    baseline = await timed_sends(arena, 3, "baseline")
    before = await arena.snapshot()
    arena.clear_logs()
    statuses: list[int] = []
    queue: asyncio.Queue[tuple[list[Any], list[Any]]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)

    async def flooder() -> None:
        while not queue.empty():
            pdus, edus = queue.get_nowait()
            reply = await arena.peer.send_transaction(arena.name, pdus, edus, timeout_s=300)
            statuses.append(reply.status)
            assert all("error" in v for v in reply.body["pdus"].values())

    flood_started = time.monotonic()
    flood = asyncio.gather(*(flooder() for _ in range(AT_ONCE)))
    during = await timed_sends(arena, LOCAL_SENDS, "during the flood", until=flood)
    await asyncio.wait_for(flood, 600)
    flood_s = time.monotonic() - flood_started

    assert statuses == [200] * TRANSACTIONS
    after = await arena.snapshot()
    assert after.state == before.state
    assert len(after.timeline) == len(before.timeline) + len(during)  # only alice's
    lines = arena.lines_naming(arena.peer.server_name)
    assert len(lines) == TRANSACTIONS * 150, len(lines)  # each refused item once
    for r in arena.caplog.records:
        assert arena.secret not in r.getMessage()
    print(
        f"\nflood: {TRANSACTIONS} transactions x (50 PDUs + 100 EDUs), {AT_ONCE} at a time,"
        f" took {flood_s:.1f} s; local send latency ms: baseline {_summary(baseline)},"
        f" during the flood {_summary(during)} ({len(during)} sends)"
    )


def _summary(values: list[float]) -> str:
    return f"median {statistics.median(values):.0f} max {max(values):.0f}"
