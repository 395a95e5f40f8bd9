"""(g) Cost curves: send latency and incremental /sync latency as one room grows through
``--curve-sizes`` members (default 10,100,1000; issue 15 asks for 10 to 10,000), and, for
Myelin, the SQL statements one send and one incremental /sync run at each size.

Setup (not measured): one room; members join over HTTP (8 at once) until the room has the
next size; then the server is left until it is quiet (``bench_remote_join.settle``: work
deferred behind the joins, such as push evaluation, is not the next sends'), and
``--curve-warmups`` sends, each followed by the sync, are made unmeasured. Measured at
each size, over HTTP: ``--curve-sends`` sequential sends by the owner (latency of each),
and after each send an incremental /sync of a member that returns it (latency of the
sync). Target: send latency flat within 2x from the smallest to the largest size.

Why the wait and the warm-up (both servers alike): the first size was measured right
after the server started, so its sends carried the server's first use of their
statements (on PostgreSQL, Myelin prepared ~240 statements on its pool's connections
during the 10-member sends: 7.5 ms p50 against 3.2-3.4 at 100 and 1,000 members), and
each size's first sends landed on the joins' deferred work; with 20 samples a few such
sends moved the p50 of one size and not the others.

Statement counts (Myelin only, in-process, SQLite): a server is started in this process
on a fresh database, the room grows the same way, and ``count_statements()``
(homeserver/storage/database.py) counts the statements of ``RoomService.send_event`` and
of ``SyncBuilder.sync`` (incremental), the calls the HTTP handlers make. Counts are not
timings: they are the same on any machine. Push evaluation (which an incremental /sync
waits for: its unread counts) is measured there too: ``EVAL_MESSAGES`` messages sent
while the evaluator is stopped, then evaluated; the process's CPU time and the
statements per message (issue 15: flat in the room size).
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.bench_remote_join import settle
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

TIME_CAP_S = 900.0  # for the joins of the whole run
EVAL_MESSAGES = 40  # messages whose push evaluation is measured at each size


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--curve-sizes",
        default="10,100,1000",
        help="room sizes (members), comma-separated; issue 15's full curve: 10,100,1000,10000",
    )
    p.add_argument("--curve-sends", type=int, default=20, help="sends (and syncs) per size")
    p.add_argument(
        "--curve-warmups",
        type=int,
        default=5,
        help="unmeasured sends (and syncs) per size, after the server is quiet",
    )
    p.add_argument(
        "--curve-no-counts", action="store_true", help="skip Myelin's in-process statement counts"
    )


def sizes(args: argparse.Namespace) -> list[int]:
    out = sorted({int(s) for s in str(args.curve_sizes).split(",") if s.strip()})
    if not out or out[0] < 2:
        raise SystemExit("--curve-sizes: sizes of at least 2 members")
    return out


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    # The table's rows follow the sizes asked for (needs() runs before any workload).
    WORKLOAD.rows[:] = table_rows(sizes(args))
    return {"curve": (max(sizes(args)), False)}


def table_rows(room_sizes: list[int]) -> list[tuple[str, str, bool]]:
    rows: list[tuple[str, str, bool]] = []
    for size in room_sizes:
        rows.append((f"send p50 at {size} members (ms)", f"sizes.{size}.send_ms.p50_ms", True))
        rows.append((f"sync p50 at {size} members (ms)", f"sizes.{size}.sync_ms.p50_ms", True))
    for size in room_sizes:
        rows.append((f"statements: send at {size}", f"statements.{size}.send", True))
        rows.append((f"statements: sync at {size}", f"statements.{size}.incremental_sync", True))
    for size in room_sizes:
        rows.append(
            (
                f"push evaluation CPU per message at {size} (ms)",
                f"statements.{size}.eval_cpu_ms",
                True,
            )
        )
        rows.append(
            (f"statements: push evaluation per message at {size}", f"statements.{size}.eval", True)
        )
    rows.append(("send p50 growth, largest/smallest (x)", "send_growth", True))
    rows.append(("sync p50 growth, largest/smallest (x)", "sync_growth", True))
    return rows


async def grow(
    client: Client, users: list[User], room_id: str, have: int, want: int, deadline: Deadline
) -> int:
    """Join ``users[have:want]`` (8 at once); the number of members afterwards."""

    async def join(u: User) -> bool:
        if deadline.expired:
            return False
        await client.join(u, room_id)
        return True

    joined = await bounded_gather(8, [partial(join, u) for u in users[have:want]])
    return have + sum(1 for ok in joined if ok)


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    users = target.users["curve"]
    owner, reader = users[0], users[1]
    room_id = await client.create_room(owner, name="curve")
    deadline = Deadline(TIME_CAP_S)
    members = 1
    curve: dict[str, Any] = {}
    for size in sizes(args):
        t0 = time.perf_counter()
        members = await grow(client, users, room_id, members, size, deadline)
        join_s = time.perf_counter() - t0
        settle_s = await settle(target.pid)
        since = (await client.sync(reader, filter_='{"room":{"timeline":{"limit":1}}}'))[
            "next_batch"
        ]
        send_t: list[float] = []
        sync_t: list[float] = []
        for i in range(args.curve_warmups + args.curve_sends):
            t0 = time.perf_counter()
            await client.send_text(owner, room_id, f"curve {size} {i}")
            sent = time.perf_counter() - t0
            t0 = time.perf_counter()
            body = await client.sync(reader, since=since)
            synced = time.perf_counter() - t0
            since = body["next_batch"]
            if i >= args.curve_warmups:
                send_t.append(sent)
                sync_t.append(synced)
        curve[str(size)] = {
            "members": members,
            "join_s": round(join_s, 2),
            "settle_s": round(settle_s, 2),
            "send_ms": summarize(send_t),
            "sync_ms": summarize(sync_t),
        }
    result: dict[str, Any] = {"sizes": curve, "capped": deadline.hit}
    first, last = curve[str(sizes(args)[0])], curve[str(sizes(args)[-1])]
    result["send_growth"] = round(last["send_ms"]["p50_ms"] / first["send_ms"]["p50_ms"], 2)
    result["sync_growth"] = round(last["sync_ms"]["p50_ms"] / first["sync_ms"]["p50_ms"], 2)
    if target.name == "myelin" and not args.curve_no_counts:
        result["statements"] = await statement_counts(sizes(args))
    return result


async def statement_counts(room_sizes: list[int]) -> dict[str, dict[str, float]]:
    """Statements of one send and one incremental sync at each size, in-process, and the
    CPU time and statements of push evaluation per message."""
    import aiohttp

    from homeserver.app import start
    from homeserver.config import parse_config
    from homeserver.events.keys import encode_signing_key_line, generate_signing_key
    from homeserver.storage.database import count_statements
    from homeserver.streams.tokens import StreamToken
    from homeserver.sync.model import SyncRequest
    from homeserver.tls import write_self_signed

    base = Path(tempfile.mkdtemp(prefix="bench-curve-counts-"))
    key = generate_signing_key("a_" + secrets.token_hex(2))
    (base / "signing.key").write_text(encode_signing_key_line(key) + "\n")
    write_self_signed("localhost", base / "tls.crt", base / "tls.key")
    raw = {
        "server_name": "localhost",
        "data_dir": str(base),
        "database_url": f"sqlite:///{base / 'homeserver.db'}",
        "client_listener": {"bind": "127.0.0.1", "port": 0},
        "federation_listener": {"bind": "127.0.0.1", "port": 0},
        "rate_limits": {"enabled": False},
        "federation": {"insecure_local": True},
        "log_level": "WARNING",
    }
    server = await start(parse_config(raw, base))
    hs = server.hs
    out: dict[str, dict[str, float]] = {}
    try:
        people: list[User] = []
        nids: dict[str, int] = {}
        devices: dict[str, str] = {}
        for i in range(max(room_sizes)):
            user_id = hs.accounts.user_id_for(f"c{i}")
            await hs.accounts.create_account(user_id, None)
            record = await hs.accounts.store.get_user(user_id)
            assert record is not None
            session = await hs.accounts.start_session(record, None, None, False)
            people.append(User(user_id, session.access_token, f"c{i}"))
            nids[user_id] = record.user_nid
            devices[user_id] = session.device_id
        owner, reader = people[0], people[1]
        async with aiohttp.ClientSession() as http:
            client = Client(server.client_url, http)
            room_id = await client.create_room(owner, name="counts")
            members = 1
            deadline = Deadline(TIME_CAP_S)

            async def sync(since: str | None) -> tuple[Any, int]:
                req = SyncRequest(
                    user_id=reader.user_id,
                    device_id=devices[reader.user_id],
                    user_nid=nids[reader.user_id],
                    since=StreamToken.parse(since, "since") if since else None,
                )
                with count_statements() as counter:
                    body = await hs.sync_area.sync.sync(req)
                return body, counter.total

            async def send(text: str) -> int:
                with count_statements() as counter:
                    await hs.rooms_area.rooms.send_event(
                        owner.user_id,
                        room_id,
                        "m.room.message",
                        {"msgtype": "m.text", "body": text},
                    )
                return counter.total

            async def evaluation_cost(send: Callable[[str], Awaitable[int]]) -> tuple[float, float]:
                """CPU and statements per message of push evaluation (which /sync waits
                for): ``EVAL_MESSAGES`` messages queued, then evaluated in one go."""
                evaluator = hs.sync_area.push_evaluator
                await evaluator.stop()
                for i in range(EVAL_MESSAGES):
                    await send(f"queued {i}")
                t0 = time.process_time()
                with count_statements() as counter:
                    for _ in range(EVAL_MESSAGES):
                        if not await evaluator.step():
                            break
                cpu_ms = (time.process_time() - t0) * 1000 / EVAL_MESSAGES
                hs.background.append(evaluator.start())
                return round(cpu_ms, 3), round(counter.total / EVAL_MESSAGES, 2)

            for size in room_sizes:
                members = await grow(client, people, room_id, members, size, deadline)
                body, _ = await sync(None)
                await send("warm")  # caches filled by the first send at this size
                body, _ = await sync(body["next_batch"])
                sent = await send("counted")
                _, synced = await sync(body["next_batch"])
                cpu_ms, evaluated = await evaluation_cost(send)
                out[str(size)] = {
                    "members": members,
                    "send": sent,
                    "incremental_sync": synced,
                    "eval_cpu_ms": cpu_ms,
                    "eval": evaluated,
                }
    finally:
        await server.stop()
    return out


WORKLOAD = Workload("curves", needs, run, table_rows([10, 100, 1000]))

if __name__ == "__main__":
    main([WORKLOAD], configure)
