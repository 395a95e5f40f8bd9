"""(4) Room creation: ``--creates`` rooms made by ``--creators`` users at once.

Each creator makes rooms one after another (``preset: private_chat`` with a name and a
topic, as a client's "new room" dialog sends); rooms/s over the whole run and the latency
of each ``createRoom``.
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

TIME_CAP_S = 180.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--creates", type=int, default=200, help="rooms in total")
    p.add_argument("--creators", type=int, default=4, help="users creating at once")


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"create": (args.creators, False)}


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    creators = target.users["create"]
    deadline = Deadline(TIME_CAP_S)
    samples: list[float] = []
    per_creator = -(-args.creates // len(creators))

    async def creator(user: User, index: int) -> None:
        for i in range(per_creator):
            if deadline.expired or len(samples) >= args.creates:
                return
            s0 = time.perf_counter()
            await client.create_room(
                user, preset="private_chat", name=f"room {index}.{i}", topic="benchmark"
            )
            samples.append(time.perf_counter() - s0)

    t0 = time.perf_counter()
    await bounded_gather(len(creators), [partial(creator, u, n) for n, u in enumerate(creators)])
    elapsed = time.perf_counter() - t0
    return {
        "rooms": len(samples),
        "rooms_per_s": round(len(samples) / elapsed, 1) if elapsed else 0,
        "latency": summarize(samples),
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "create",
    needs,
    run,
    [
        ("rooms/s, concurrent creators", "rooms_per_s", False),
        ("createRoom p50 (ms)", "latency.p50_ms", True),
        ("createRoom p95 (ms)", "latency.p95_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
