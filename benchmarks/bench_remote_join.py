"""(7) Joining a big remote room: ``--remote-members`` members of server A sit in one room
(with ``--remote-messages`` messages); a user of a second, fresh server B of the same kind
(Myelin joining Myelin, Synapse joining Synapse, same engine) joins it over real federation
(HTTPS on 127.0.0.1, each server's own key and self-signed certificate, accepted as the
interop tests have them: Myelin ``federation.insecure_local``, Synapse certificate checks
off and loopback allowed).

Set-up (timed, not the metric): A's users are provisioned as for every workload, then join
the room over HTTP, ``--remote-join-concurrency`` at once; then A is left until it is quiet
(``settle``: work it deferred behind the set-up's joins is not the join's; the wait is
reported); server B starts with one user.

Measured on B, every time from the moment the join request is sent:

- ``POST /join`` wall time;
- the joiner's first message: until its send returns 200, and until a member of A sees it
  (a ``/sync`` long-poll on A, parked before the join);
- an initial ``/sync`` of the joiner with lazy-loaded members, then ``GET /messages``
  backwards from its timeline for the history from before the join (B has none of it and
  backfills it from A), page after page (at most ``HISTORY_PAGES``) until every message
  sent before the join was read; "can read" is the time from the join until then;
- until B's ``GET /members`` lists every member (the full state; with a partial-state join
  this is when the background resync has finished; polled after the steps above, so it is
  never less than the "can read" time);
- B's peak RSS (VmHWM, cleared before the join) and CPU seconds from the join until the
  full member list, and A's CPU seconds over the same span (serving the join).

Heavy: at the default 5,000 members the set-up alone (5,000 joins over HTTP on server A)
took 25 minutes per server kind on 2 busy cores, so ``run_all`` runs it only when named.
``--myelin-config-extra`` passes settings to the joining Myelin (server B only), e.g.
``'{federation: {partial_state_joins: true}}'`` to compare full and partial-state joins.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
import urllib.parse
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.harness import (
    Client,
    Deadline,
    HttpError,
    Target,
    User,
    Workload,
    bounded_gather,
    cpu_seconds,
    main,
    reset_peak_rss,
    rss_kib,
    started,
)

SETUP_CAP_S = 1800.0
JOIN_CAP_S = 900.0
MEMBERS_POLL_S = 0.5
# The resident is quiet (``settle``) once under this share of a core over a window.
QUIET_SHARE = 0.1
QUIET_WINDOW_S = 2.0
SETTLE_CAP_S = 900.0
# /messages pages read back at most for the history from before the join.
HISTORY_PAGES = 20
WATCH_FILTER = json.dumps({"room": {"timeline": {"limit": 50}}}, separators=(",", ":"))
LAZY_SYNC_FILTER = json.dumps(
    {"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": True}}},
    separators=(",", ":"),
)


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--remote-members",
        type=int,
        default=5000,
        help="members of the room on server A (remotejoin; heavy: at 5000 the set-up"
        " took 25 min a server kind on 2 busy cores)",
    )
    p.add_argument("--remote-messages", type=int, default=5, help="messages in it before the join")
    p.add_argument("--remote-join-concurrency", type=int, default=8, help="set-up joins at once")
    p.add_argument(
        "--remote-chatter-ms",
        type=int,
        default=0,
        help="B's joiner also sends a message every this many ms from the first send until"
        " /members is full (sends during the resync: do they wait for it?); 0: none",
    )
    p.add_argument(
        "--myelin-config-extra",
        default="",
        help="YAML mapping (or a file of it) merged into the joining Myelin's config",
    )


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"rjoin": (max(1, args.remote_members), False)}


def config_extra(text: str) -> dict[str, Any]:
    """``--myelin-config-extra``: inline YAML, or the path of a YAML file."""
    if not text:
        return {}
    path = Path(text)
    data = yaml.safe_load(path.read_text() if path.is_file() else text)
    if not isinstance(data, dict):
        raise SystemExit("--myelin-config-extra must be a YAML mapping")
    return data


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    users = target.users["rjoin"]
    owner = users[0]
    t_setup = time.perf_counter()
    room_id = await client.create_room(owner, name="big remote room")
    deadline = Deadline(SETUP_CAP_S)

    async def join(u: User) -> None:
        if not deadline.expired:
            await client.join(u, room_id)

    await bounded_gather(args.remote_join_concurrency, [partial(join, u) for u in users[1:]])
    joins_s = time.perf_counter() - t_setup
    for i in range(args.remote_messages):
        await client.send_text(users[i % len(users)], room_id, f"before the join {i}")
    setup_s = time.perf_counter() - t_setup
    settle_s = await settle(target.pid)
    print(
        f"  [{target.name}] remotejoin: room of {len(users)} set up in {setup_s:.1f}s,"
        f" quiet {settle_s:.1f}s later",
        flush=True,
    )

    extra = config_extra(args.myelin_config_extra)
    async with (
        started(target.name, {"joiner": (1, False)}, args.keep, extra) as joining,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as session,
    ):
        result = await measure(
            target, client, joining, Client(joining.client_url, session), room_id, len(users), args
        )
    result.update(
        {
            "remote_members": len(users),
            "setup_s": round(setup_s, 1),
            "settle_s": round(settle_s, 1),
            "setup_joins_per_s": round((len(users) - 1) / joins_s, 1) if joins_s else None,
            "capped": deadline.hit or result["capped"],
        }
    )
    return result


async def settle(pid: int) -> float:
    """Wait until the resident server is quiet, its CPU under ``QUIET_SHARE`` of a core
    over ``QUIET_WINDOW_S`` (at most ``SETTLE_CAP_S``); the seconds waited. The set-up
    packs thousands of joins into minutes, and work a server defers behind them (push
    evaluation, say) would otherwise land in the measured join: #7 is a join into a
    big room, not into one still digesting its members' arrival. Both kinds of server
    get the same wait; how long it was is reported."""
    t0 = time.perf_counter()
    deadline = Deadline(SETTLE_CAP_S)
    while not deadline.expired:
        before = cpu_seconds(pid)
        await asyncio.sleep(QUIET_WINDOW_S)
        if cpu_seconds(pid) - before < QUIET_SHARE * QUIET_WINDOW_S:
            break
    return time.perf_counter() - t0


async def measure(
    resident: Target,
    a: Client,
    joining: Target,
    b: Client,
    room_id: str,
    members: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The join, timed from B's side; ``members`` is how many of A's users are in the room."""
    joiner = joining.users["joiner"][0]
    watcher = resident.users["rjoin"][0]
    since = (await a.sync(watcher, filter_=WATCH_FILTER))["next_batch"]
    deadline = Deadline(JOIN_CAP_S)
    chatter: asyncio.Task[None] | None = None
    chatter_ms: list[float] = []
    sent_id: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    rss_idle = rss_kib(joining.pid)["VmRSS"]
    reset_peak_rss(joining.pid)
    cpu_b0, cpu_a0 = cpu_seconds(joining.pid), cpu_seconds(resident.pid)
    t0 = time.perf_counter()
    watch = asyncio.create_task(seen_on_resident(a, watcher, since, room_id, sent_id, deadline))
    try:
        q = urllib.parse.quote(room_id)
        await b.request(
            "POST",
            f"/_matrix/client/v3/join/{q}",
            joiner.access_token,
            {},
            params={"via": resident.server_name, "server_name": resident.server_name},
            timeout_s=JOIN_CAP_S,
        )
        join_s = time.perf_counter() - t0
        sent_id.set_result(await b.send_text(joiner, room_id, "hello from the joining server"))
        send_s = time.perf_counter() - t0
        if args.remote_chatter_ms > 0:
            chatter = asyncio.create_task(
                chat(b, joiner, room_id, args.remote_chatter_ms / 1000, chatter_ms)
            )

        s0 = time.perf_counter()
        body = await b.sync(joiner, filter_=LAZY_SYNC_FILTER)
        lazy_sync_s = time.perf_counter() - s0
        room = body.get("rooms", {}).get("join", {}).get(room_id, {})
        timeline = room.get("timeline", {}).get("events", [])
        lazy_members = sum(
            1
            for e in [*room.get("state", {}).get("events", []), *timeline]
            if e.get("type") == "m.room.member"
        )

        # History from before the join: B has none of it and fetches it (backfill).
        # "Can read" means every message sent before the join was read: pages are
        # asked for until all are (bounded), not just one page whatever it held.
        h0 = time.perf_counter()
        before_ids = {e.get("event_id") for e in timeline if _before_join(e)}
        prev = room.get("timeline", {}).get("prev_batch")
        pages = 0
        while len(before_ids) < args.remote_messages and pages < HISTORY_PAGES:
            params = {"dir": "b", "limit": "20"}
            if isinstance(prev, str):
                params["from"] = prev
            history = await b.request(
                "GET", f"/_matrix/client/v3/rooms/{q}/messages", joiner.access_token, params=params
            )
            pages += 1
            chunk = history.get("chunk", [])
            before_ids.update(e.get("event_id") for e in chunk if _before_join(e))
            prev = history.get("end")
            if not chunk or not isinstance(prev, str):
                break
        history_s = time.perf_counter() - h0
        read_s = time.perf_counter() - t0

        full_s, listed = await until_members(b, joiner, room_id, members + 1, t0, deadline)
        seen_s = await watch
    finally:
        watch.cancel()
        if chatter is not None:
            chatter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await chatter
    hwm = rss_kib(joining.pid)
    chatter_ms.sort()
    return {
        "join_s": round(join_s, 2),
        "first_send_s": round(send_s, 2),
        "send_seen_on_resident_s": None if seen_s is None else round(seen_s - t0, 2),
        "lazy_sync_ms": round(lazy_sync_s * 1000, 1),
        "messages_ms": round(history_s * 1000, 1),
        "history_read": len(before_ids),
        "history_pages": pages,
        "read_s": round(read_s, 2),
        "room_in_sync": bool(room),
        "timeline_events": len(timeline),
        "lazy_sync_members": lazy_members,
        "full_members_s": None if full_s is None else round(full_s, 2),
        "members_listed": listed,
        "joiner_rss_idle_mib": round(rss_idle / 1024, 1),
        "joiner_peak_rss_mib": round(hwm["VmHWM"] / 1024, 1),
        "joiner_rss_after_mib": round(hwm["VmRSS"] / 1024, 1),
        "joiner_cpu_s": round(cpu_seconds(joining.pid) - cpu_b0, 2),
        "resident_cpu_s": round(cpu_seconds(resident.pid) - cpu_a0, 2),
        "chatter_sends": len(chatter_ms) if chatter is not None else None,
        "chatter_p50_ms": _at(chatter_ms, 0.5),
        "chatter_max_ms": _at(chatter_ms, 1.0),
        "capped": deadline.hit,
    }


async def chat(b: Client, joiner: User, room_id: str, every_s: float, took_ms: list[float]) -> None:
    """Send a message every ``every_s`` until cancelled, each one's milliseconds in
    ``took_ms`` (``--remote-chatter-ms``)."""
    n = 0
    while True:
        s0 = time.perf_counter()
        await b.send_text(joiner, room_id, f"during the resync {n}")
        took_ms.append((time.perf_counter() - s0) * 1000)
        n += 1
        await asyncio.sleep(every_s)


def _at(sorted_ms: list[float], share: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(share * len(sorted_ms)))], 1)


def _before_join(event: dict[str, Any]) -> bool:
    return str(event.get("content", {}).get("body", "")).startswith("before the join")


async def seen_on_resident(
    a: Client,
    watcher: User,
    since: str,
    room_id: str,
    sent_id: asyncio.Future[str],
    deadline: Deadline,
) -> float | None:
    """When a long-polling ``/sync`` of ``watcher`` on A carried the event B sent (its id is
    known once the send returns; the long-polls park from before the join)."""
    seen: set[str] = set()
    while not deadline.expired:
        body = await a.sync(watcher, since=since, timeout_ms=10_000, filter_=WATCH_FILTER)
        at = time.perf_counter()
        since = body["next_batch"]
        timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        seen.update(e.get("event_id", "") for e in timeline.get("events", []))
        if sent_id.done() and sent_id.result() in seen:
            return at
    return None


async def until_members(
    b: Client, joiner: User, room_id: str, expected: int, t0: float, deadline: Deadline
) -> tuple[float | None, int]:
    """Seconds from ``t0`` until B's ``/members`` lists ``expected`` members (None: not
    within the cap), and how many it listed last. A server may hold the request until it
    has the full state (Synapse does for partial-state rooms): the time is when it answers."""
    q = urllib.parse.quote(room_id)
    listed = 0
    while not deadline.expired:
        try:
            reply = await b.request(
                "GET",
                f"/_matrix/client/v3/rooms/{q}/members",
                joiner.access_token,
                timeout_s=JOIN_CAP_S,
            )
        except (HttpError, TimeoutError):
            reply = {}
        chunk = reply.get("chunk", []) if isinstance(reply, dict) else []
        listed = sum(1 for e in chunk if e.get("content", {}).get("membership") == "join")
        if listed >= expected:
            return time.perf_counter() - t0, listed
        await asyncio.sleep(MEMBERS_POLL_S)
    return None, listed


WORKLOAD = Workload(
    "remotejoin",
    needs,
    run,
    [
        ("members on A", "remote_members", False),
        ("set-up joins/s on A", "setup_joins_per_s", False),
        ("A quiet after the set-up (s)", "settle_s", False),
        ("POST /join on B (s)", "join_s", True),
        ("join to first send 200 (s)", "first_send_s", True),
        ("join to send seen on A (s)", "send_seen_on_resident_s", True),
        ("lazy initial sync on B (ms)", "lazy_sync_ms", True),
        ("GET /messages back, history (ms)", "messages_ms", True),
        ("messages from before the join read", "history_read", False),
        ("join to sync + history read (s)", "read_s", True),
        ("join to full /members (s)", "full_members_s", True),
        ("members listed on B", "members_listed", False),
        ("sends during the resync (--remote-chatter-ms)", "chatter_sends", False),
        ("send during the resync, median (ms)", "chatter_p50_ms", True),
        ("send during the resync, max (ms)", "chatter_max_ms", True),
        ("B peak RSS, VmHWM (MiB)", "joiner_peak_rss_mib", True),
        ("B CPU, join to full state (s)", "joiner_cpu_s", True),
        ("A CPU over the same (s)", "resident_cpu_s", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
