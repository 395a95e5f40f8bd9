"""(1) Romeo-and-Juliet shaped sequential sends, set-up included.

``--rj-users`` users register over HTTP with a password (the user-interactive flow with
``m.login.dummy``), log in, set a display name and join one room (the first one creates it),
one after another; then ``--rj-messages`` messages are sent one after another, cycling
through the users, as a play read aloud would. Set-up seconds and messages/s are reported,
and the latency of each send.
"""

from __future__ import annotations

import argparse
import secrets
import time
from typing import Any

from benchmarks.harness import Client, Deadline, Target, Workload, main, summarize

TIME_CAP_S = 300.0


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rj-users", type=int, default=30)
    p.add_argument("--rj-messages", type=int, default=3000)


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {}


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    password = "rj-" + secrets.token_hex(8)
    tag = secrets.token_hex(2)
    deadline = Deadline(TIME_CAP_S)
    t0 = time.perf_counter()
    users = []
    room_id = ""
    for i in range(args.rj_users):
        if deadline.expired:
            break
        localpart = f"rj{tag}_{i}"
        await client.register(localpart, password)
        user = await client.login(localpart, password)
        await client.set_displayname(user, f"Player {i}")
        if not room_id:
            room_id = await client.create_room(user, name="Verona")
        else:
            await client.join(user, room_id)
        users.append(user)
    setup_s = time.perf_counter() - t0

    samples: list[float] = []
    t0 = time.perf_counter()
    for i in range(args.rj_messages):
        if deadline.expired:
            break
        s0 = time.perf_counter()
        await client.send_text(users[i % len(users)], room_id, f"line {i}: what light through")
        samples.append(time.perf_counter() - s0)
    send_s = time.perf_counter() - t0
    return {
        "users": len(users),
        "setup_s": round(setup_s, 2),
        "messages": len(samples),
        "messages_per_s": round(len(samples) / send_s, 1) if send_s else 0,
        "send": summarize(samples),
        "capped": deadline.hit,
    }


WORKLOAD = Workload(
    "rj",
    needs,
    run,
    [
        ("set-up: register+login+name+join (s)", "setup_s", True),
        ("sequential messages/s", "messages_per_s", False),
        ("send p50 (ms)", "send.p50_ms", True),
        ("send p95 (ms)", "send.p95_ms", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
