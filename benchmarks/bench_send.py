"""(b) Message sends into one room with N members, and concurrent sends into many rooms.

1. ``--sends`` sequential sends by one member (latency of each, and throughput);
2. ``--senders`` members sending concurrently into the one room, ``--concurrent-sends``
   each (throughput, and p50/p95/p99 of each send);
3. the same senders, the same counts, each into a room of its own (``--senders`` rooms):
   what one room's ordering costs against sends that need not wait for each other.
The rooms are set up over HTTP (create, then every member joins) and not measured.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

from benchmarks.harness import (
    Client,
    Deadline,
    Target,
    User,
    Workload,
    bounded_gather,
    main,
    summarize,
)

TIME_CAP_S = 120.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--room-members", type=int, default=50)
    p.add_argument("--sends", type=int, default=1000)
    p.add_argument("--senders", type=int, default=16)
    p.add_argument("--concurrent-sends", type=int, default=50, help="sends per concurrent sender")


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"send": (max(args.room_members, args.senders + 1), False)}


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    users = target.users["send"]
    owner = users[0]
    room_id = await client.create_room(owner, name="send bench")
    t0 = time.perf_counter()
    await bounded_gather(8, [partial(client.join, u, room_id) for u in users[1:]])
    join_s = time.perf_counter() - t0

    deadline = Deadline(TIME_CAP_S)
    samples: list[float] = []
    t0 = time.perf_counter()
    for i in range(args.sends):
        if deadline.expired:
            break
        s0 = time.perf_counter()
        await client.send_text(owner, room_id, f"message {i}")
        samples.append(time.perf_counter() - s0)
    seq_s = time.perf_counter() - t0

    senders = users[1 : 1 + args.senders]
    one_room = await concurrent(client, [(u, room_id) for u in senders], args.concurrent_sends)
    own_rooms = await bounded_gather(
        4, [partial(client.create_room, u, name="own room") for u in senders]
    )
    many_rooms = await concurrent(
        client, list(zip(senders, own_rooms, strict=True)), args.concurrent_sends
    )
    return {
        "members": len(users),
        "joins_per_s": round((len(users) - 1) / join_s, 1),
        "sequential": summarize(samples),
        "sequential_per_s": round(len(samples) / seq_s, 1),
        "concurrent_per_s": one_room["per_s"],
        "concurrent": one_room["latency"],
        "rooms_concurrent_per_s": many_rooms["per_s"],
        "rooms_concurrent": many_rooms["latency"],
        "capped": deadline.hit or one_room["capped"] or many_rooms["capped"],
    }


async def concurrent(client: Client, pairs: list[tuple[User, str]], count: int) -> dict[str, Any]:
    """Every (sender, room) pair sends ``count`` messages one after another, all pairs at
    once; throughput and the latency of each send."""
    deadline = Deadline(TIME_CAP_S)
    samples: list[float] = []

    async def sender(u: User, room: str) -> None:
        for i in range(count):
            if deadline.expired:
                return
            s0 = time.perf_counter()
            await client.send_text(u, room, f"concurrent {i}")
            samples.append(time.perf_counter() - s0)

    t0 = time.perf_counter()
    await bounded_gather(len(pairs), [partial(sender, u, r) for u, r in pairs])
    elapsed = time.perf_counter() - t0
    return {
        "per_s": round(len(samples) / elapsed, 1) if elapsed else 0,
        "latency": summarize(samples),
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "send",
    needs,
    run,
    [
        ("joins/s (setup)", "joins_per_s", False),
        ("sequential send p50 (ms)", "sequential.p50_ms", True),
        ("sequential send p99 (ms)", "sequential.p99_ms", True),
        ("sequential sends/s", "sequential_per_s", False),
        ("concurrent sends/s, one room", "concurrent_per_s", False),
        ("concurrent send p50 (ms), one room", "concurrent.p50_ms", True),
        ("concurrent send p95 (ms), one room", "concurrent.p95_ms", True),
        ("concurrent send p99 (ms), one room", "concurrent.p99_ms", True),
        ("concurrent sends/s, a room each", "rooms_concurrent_per_s", False),
        ("concurrent send p50 (ms), a room each", "rooms_concurrent.p50_ms", True),
        ("concurrent send p95 (ms), a room each", "rooms_concurrent.p95_ms", True),
        ("concurrent send p99 (ms), a room each", "rooms_concurrent.p99_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
