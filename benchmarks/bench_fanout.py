"""(3) Fan-out: ``--fanout-members`` members long-poll ``/sync`` in one room; one more member
sends a message; we time from the send request until every receiver's long-poll has
returned the message. ``--fanout-rounds`` rounds; p50/p95 of "every receiver has it" and of
each single delivery.

A long-poll woken by something else (a receipt, presence) is sent again with the new
``since`` until the message arrives, within the round's time cap.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
ROUND_CAP_S = 30.0
# Timeline only: the fan-out is about the message, not about presence or receipts.
SYNC_FILTER = json.dumps(
    {
        "room": {"timeline": {"limit": 5}, "ephemeral": {"not_types": ["*"]}},
        "presence": {"not_types": ["*"]},
    },
    separators=(",", ":"),
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fanout-members", type=int, default=20, help="receivers long-polling")
    p.add_argument("--fanout-rounds", type=int, default=30)


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"fan": (args.fanout_members + 1, False)}


def has_event(body: Any, room_id: str, event_id: str) -> bool:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return any(e.get("event_id") == event_id for e in room.get("timeline", {}).get("events", []))


class Round:
    """One message's fan-out: when it was sent, its id once the send answered."""

    def __init__(self) -> None:
        self.sent_at = 0.0
        self.event_id = ""
        self.sent = asyncio.Event()


async def receive(
    client: Client, u: User, since: dict[str, str], room_id: str, this: Round
) -> float | None:
    """Long-poll as ``u`` until the round's message arrives: seconds from its send."""
    round_end = time.monotonic() + ROUND_CAP_S
    while time.monotonic() < round_end:
        body = await client.sync(
            u, since=since[u.user_id], timeout_ms=int(ROUND_CAP_S * 1000), filter_=SYNC_FILTER
        )
        arrived = time.perf_counter()
        since[u.user_id] = body["next_batch"]
        await this.sent.wait()
        if has_event(body, room_id, this.event_id):
            return arrived - this.sent_at
    return None


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    users = target.users["fan"]
    sender, receivers = users[0], users[1:]
    room_id = await client.create_room(sender, name="fan-out")
    await bounded_gather(8, [partial(client.join, u, room_id) for u in receivers])
    since: dict[str, str] = {}
    for u in receivers:
        since[u.user_id] = (await client.sync(u, filter_=SYNC_FILTER))["next_batch"]

    deadline = Deadline(TIME_CAP_S)
    all_got: list[float] = []
    each_got: list[float] = []
    missed = 0
    for i in range(args.fanout_rounds):
        if deadline.expired:
            break
        this = Round()
        polls = [asyncio.ensure_future(receive(client, u, since, room_id, this)) for u in receivers]
        await asyncio.sleep(0.1)  # let every long-poll reach the server and park
        this.sent_at = time.perf_counter()
        this.event_id = await client.send_text(sender, room_id, f"fan {i}")
        this.sent.set()
        got = await asyncio.gather(*polls)
        ok = [g for g in got if g is not None]
        missed += len(got) - len(ok)
        each_got.extend(ok)
        if ok:
            all_got.append(max(ok))
    return {
        "receivers": len(receivers),
        "rounds": len(all_got),
        "all_received": summarize(all_got),
        "each_received": summarize(each_got),
        "missed": missed,
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "fanout",
    needs,
    run,
    [
        ("send to every receiver p50 (ms)", "all_received.p50_ms", True),
        ("send to every receiver p95 (ms)", "all_received.p95_ms", True),
        ("send to one receiver p50 (ms)", "each_received.p50_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
