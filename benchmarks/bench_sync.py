"""(c) /sync: initial sync of a user in many rooms with history, incremental sync wake-up.

Setup (not measured): ``--sync-rooms`` rooms created by the syncing user, each with
``--history`` messages; a second user joins one room to send into it.
Measured: initial sync (timeline limit 10, no since) several times, the first one apart;
``--incrementals`` rounds of: the other user sends a message, then the syncing user's
incremental sync (``timeout=0``) is timed; then ``--wakeups`` rounds of: the syncing user
long-polls with the latest ``since``, the other user sends a message, and we time from the
send request to the long-poll's answer. The defaults are issue 15's sizes (200 rooms of 50
messages); the initial sync of a lazy-loaded 2,000-member room is in ``bench_bigroom``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from functools import partial
from typing import Any

from benchmarks.harness import (
    INITIAL_SYNC_FILTER,
    Client,
    Deadline,
    Target,
    Workload,
    bounded_gather,
    main,
    summarize,
)

TIME_CAP_S = 120.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sync-rooms", type=int, default=200)
    p.add_argument("--history", type=int, default=50, help="messages per room")
    p.add_argument("--initial-syncs", type=int, default=3)
    p.add_argument("--incrementals", type=int, default=20)
    p.add_argument("--wakeups", type=int, default=50)


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"sync": (2, False)}


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    reader, writer = target.users["sync"]

    async def make_room(i: int) -> str:
        room_id = await client.create_room(reader, name=f"sync {i}")
        for j in range(args.history):
            await client.send_text(reader, room_id, f"history {j}")
        return room_id

    rooms = await bounded_gather(4, [partial(make_room, i) for i in range(args.sync_rooms)])
    await client.join(writer, rooms[0])

    initial: list[float] = []
    for _ in range(args.initial_syncs):
        t0 = time.perf_counter()
        body = await client.sync(reader, filter_=INITIAL_SYNC_FILTER)
        initial.append(time.perf_counter() - t0)
    joined = len(body["rooms"]["join"])
    since = body["next_batch"]
    # Drain whatever arrived between setup and now.
    since = (await client.sync(reader, since=since))["next_batch"]

    deadline = Deadline(TIME_CAP_S)
    incremental: list[float] = []
    for i in range(args.incrementals):
        if deadline.expired:
            break
        await client.send_text(writer, rooms[0], f"incremental {i}")
        t0 = time.perf_counter()
        body = await client.sync(reader, since=since, filter_=INITIAL_SYNC_FILTER)
        incremental.append(time.perf_counter() - t0)
        since = body["next_batch"]

    wake: list[float] = []
    for i in range(args.wakeups):
        if deadline.expired:
            break
        poll = asyncio.ensure_future(client.sync(reader, since=since, timeout_ms=30_000))
        await asyncio.sleep(0.02)  # let the long-poll reach the server and park
        t0 = time.perf_counter()
        await client.send_text(writer, rooms[0], f"wake {i}")
        body = await poll
        wake.append(time.perf_counter() - t0)
        since = body["next_batch"]
        if rooms[0] not in body.get("rooms", {}).get("join", {}):
            # Woken by something else (e.g. a receipt): wait for the message itself.
            body = await client.sync(reader, since=since, timeout_ms=30_000)
            since = body["next_batch"]
    return {
        "rooms": joined,
        "initial_first_ms": round(initial[0] * 1000, 1),
        "initial": summarize(initial),
        "incremental": summarize(incremental),
        "wakeup": summarize(wake),
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "sync",
    needs,
    run,
    [
        ("initial sync, first (ms)", "initial_first_ms", True),
        ("initial sync, p50 (ms)", "initial.p50_ms", True),
        ("incremental sync p50 (ms)", "incremental.p50_ms", True),
        ("incremental sync p95 (ms)", "incremental.p95_ms", True),
        ("send-to-wakeup p50 (ms)", "wakeup.p50_ms", True),
        ("send-to-wakeup p95 (ms)", "wakeup.p95_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
