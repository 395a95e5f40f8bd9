"""(b) Message sends into one room with N members.

1. ``--sends`` sequential sends by one member (latency of each, and throughput);
2. ``--senders`` members sending concurrently, ``--concurrent-sends`` each (throughput).
The room is set up over HTTP (create, then every member joins) and not measured.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Any

from benchmarks.harness import Client, Deadline, Target, Workload, bounded_gather, main, summarize

TIME_CAP_S = 120.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--room-members", type=int, default=50)
    p.add_argument("--sends", type=int, default=1000)
    p.add_argument("--senders", type=int, default=10)
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

    deadline2 = Deadline(TIME_CAP_S)
    senders = users[1 : 1 + args.senders]
    done = 0

    async def sender(u: Any) -> None:
        nonlocal done
        for i in range(args.concurrent_sends):
            if deadline2.expired:
                return
            await client.send_text(u, room_id, f"concurrent {i}")
            done += 1

    t0 = time.perf_counter()
    await bounded_gather(len(senders), [partial(sender, u) for u in senders])
    conc_s = time.perf_counter() - t0
    return {
        "members": len(users),
        "joins_per_s": round((len(users) - 1) / join_s, 1),
        "sequential": summarize(samples),
        "sequential_per_s": round(len(samples) / seq_s, 1),
        "concurrent_per_s": round(done / conc_s, 1),
        "capped": deadline.hit or deadline2.hit,
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
        ("concurrent sends/s", "concurrent_per_s", False),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
