"""(g) Scale-out: Myelin as 1 process against main + 1 and main + 2 workers, on PostgreSQL.

Every layout is a fresh database and real ``myelin run`` subprocesses (``--worker NAME``
for the generic workers ``worker1``, ``worker2``), all over one PostgreSQL: the server
named by ``MYELIN_BENCH_PG_DSN``, or else a throwaway cluster of ``scripts/pg-throwaway``
(started here, stopped at the end). Every process writes events itself (per-room order
is decided in PostgreSQL), so "main + 1 worker" is two event-writer processes.

Workloads, each with a fixed count and a time cap:

1. ``one room``: ``--senders`` users in one room send ``--sends`` messages each, one
   after another per user, all users at once; sender i talks to process i mod N.
2. ``own rooms``: the same, each sender in a room of its own.
3. ``fan-out``: ``--listeners`` members of one room long-poll ``/sync`` on the last
   process (the one a proxy would send ``/sync`` to: ``worker1`` or ``worker2``), a
   further member sends on the main process; per round, the time from the start of the
   send to each long-poll's answer carrying the message (all listeners' samples, and the
   slowest listener's per round), and from the send's reply (the event committed) to
   each answer. With one process, long-polls and sends share it.
4. ``wake-up`` (run before 3): the same with one listener, so the cost of building many
   answers at once does not hide the wake-up itself.

Users are provisioned in-process before the servers start (no password hashes), rooms are
created and joined over HTTP and not measured. CPU seconds of every process per workload
come from ``/proc/PID/stat``. Output: a table per layout and ``--json FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.harness import (
    ROOT,
    Client,
    Deadline,
    HttpError,
    User,
    bounded_gather,
    cpu_seconds,
    dig,
    fmt,
    free_port,
    machine_description,
    rss_kib,
    summarize,
    wait_ready,
    write_json,
)

TIME_CAP_S = 120.0
POLL_TIMEOUT_MS = 30_000
PARK_S = 0.2  # let every long-poll reach its server and park before the send
LAYOUTS = {"1 process": 0, "main + 1 worker": 1, "main + 2 workers": 2}


# ------------------------------------------------------------------ PostgreSQL


@contextlib.asynccontextmanager
async def postgres() -> AsyncIterator[str]:
    """A DSN to an admin database: ``MYELIN_BENCH_PG_DSN``, or a throwaway cluster."""
    given = os.environ.get("MYELIN_BENCH_PG_DSN", "")
    if given:
        yield given
        return
    script = ROOT / "scripts" / "pg-throwaway"
    out = await asyncio.to_thread(
        subprocess.run, [str(script), "start"], capture_output=True, text=True, check=True
    )
    # "export KEY=VALUE; export KEY=VALUE" (values are shell-quoted when needed).
    env = {
        m[1]: shlex.split(m[2])[0]
        for m in re.finditer(r"export (\w+)=((?:'[^']*'|[^;\s])+)", out.stdout)
    }
    try:
        yield env["MYELIN_TEST_PG_DSN"]
    finally:
        await asyncio.to_thread(
            subprocess.run, [str(script), "stop", env["MYELIN_PG_DIR"]], check=False
        )


# ------------------------------------------------------------------ one layout


@dataclass
class Proc:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@dataclass
class Cluster:
    """Main plus ``workers`` generic workers over one fresh PostgreSQL database."""

    admin_dsn: str
    workers: int
    base: Path
    db_name: str = field(default_factory=lambda: "myelin_bench_w_" + secrets.token_hex(4))
    procs: list[Proc] = field(default_factory=list)
    users: dict[str, list[User]] = field(default_factory=dict)

    async def start(self, needs: dict[str, int]) -> None:
        import asyncpg

        from homeserver.app import HomeServer
        from homeserver.config import load_config
        from homeserver.events.keys import encode_signing_key_line, generate_signing_key
        from homeserver.tls import write_self_signed

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(
                f"CREATE DATABASE {self.db_name} ENCODING 'UTF8' LC_COLLATE 'C' "
                "LC_CTYPE 'C' TEMPLATE template0"
            )
        finally:
            await conn.close()
        self.base.mkdir(parents=True, exist_ok=True)
        ports = {"main": free_port()}
        ports |= {f"worker{i}": free_port() for i in range(1, self.workers + 1)}
        config: dict[str, Any] = {
            "server_name": "localhost",
            "data_dir": str(self.base),
            "database_url": self.admin_dsn.rpartition("/")[0] + "/" + self.db_name,
            "client_listener": {"bind": "127.0.0.1", "port": ports["main"]},
            "federation_listener": {"bind": "127.0.0.1", "port": free_port()},
            "registration": {"enabled": True},
            "rate_limits": {"enabled": False},
            "federation": {"insecure_local": True},
            "log_level": "WARNING",
        }
        if self.workers:
            config["workers"] = {
                name: {"client_port": port} for name, port in ports.items() if name != "main"
            }
        key = generate_signing_key("a_" + secrets.token_hex(2))
        (self.base / "signing.key").write_text(encode_signing_key_line(key) + "\n")
        write_self_signed("localhost", self.base / "tls.crt", self.base / "tls.key")
        path = self.base / "homeserver.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))

        hs = await HomeServer.build(load_config(str(path)))
        try:
            for prefix, count in needs.items():

                async def one(i: int, prefix: str = prefix) -> User:
                    user_id = hs.accounts.user_id_for(f"{prefix}{i}")
                    await hs.accounts.create_account(user_id, None)
                    record = await hs.accounts.store.get_user(user_id)
                    assert record is not None
                    session = await hs.accounts.start_session(record, None, None, False)
                    return User(user_id, session.access_token, f"{prefix}{i}")

                self.users[prefix] = await bounded_gather(
                    4, [partial(one, i) for i in range(count)]
                )
        finally:
            await hs.close()

        for name, port in ports.items():
            extra = [] if name == "main" else ["--worker", name]
            process = spawn(path, extra, self.base / f"{name}.log")
            self.procs.append(Proc(name, f"http://127.0.0.1:{port}", process))
            await wait_ready(self.procs[-1].url, process)

    def cpu(self) -> dict[str, float]:
        return {p.name: cpu_seconds(p.process.pid) for p in self.procs}

    async def stop(self) -> None:
        import asyncpg

        for p in reversed(self.procs):
            if p.process.poll() is None:
                p.process.send_signal(signal.SIGTERM)
                try:
                    await asyncio.to_thread(p.process.wait, 30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.process.pid, signal.SIGKILL)
                    await asyncio.to_thread(p.process.wait, 30)
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {self.db_name} WITH (FORCE)")
        finally:
            await conn.close()


def spawn(config: Path, extra: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m homeserver run --config C EXTRA`` in its own session, output to ``log``."""
    command = [sys.executable, "-m", "homeserver", "run", "--config", str(config), *extra]
    with log.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# ------------------------------------------------------------------ workloads


async def sends(
    clients: list[Client], senders: list[User], rooms: list[str], per_sender: int
) -> dict[str, Any]:
    """Every sender sends ``per_sender`` messages, one after another, into its room
    (``rooms[i % len(rooms)]``) through process i mod N; all senders at once."""
    deadline = Deadline(TIME_CAP_S)
    samples: list[float] = []
    busy = 0

    async def sender(i: int) -> None:
        nonlocal busy
        client = clients[i % len(clients)]
        for j in range(per_sender):
            if deadline.expired:
                return
            s0 = time.perf_counter()
            try:
                await client.send_text(senders[i], rooms[i % len(rooms)], f"m {i}.{j}")
            except HttpError as e:
                # 503 "The room is busy; retry": the send lost the room to other
                # processes too many times in a row (a client retries; counted here).
                if ": 503 " not in str(e):
                    raise
                busy += 1
                continue
            samples.append(time.perf_counter() - s0)

    t0 = time.perf_counter()
    await asyncio.gather(*(sender(i) for i in range(len(senders))))
    wall = time.perf_counter() - t0
    return {
        "messages": len(samples),
        "messages_per_s": round(len(samples) / wall, 1),
        "latency": summarize(samples),
        "busy_503": busy,
        "capped": deadline.hit,
    }


def has_message(body: Any, room_id: str, text: str) -> bool:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return any(
        e.get("content", {}).get("body") == text for e in room.get("timeline", {}).get("events", [])
    )


async def fan_out(
    sync_client: Client, send_client: Client, users: list[User], rounds: int
) -> dict[str, Any]:
    """``users[0]`` sends on ``send_client``; the others long-poll on ``sync_client``."""
    writer, listeners = users[0], users[1:]
    room_id = await send_client.create_room(writer, name="fan-out bench")
    await bounded_gather(8, [partial(send_client.join, u, room_id) for u in listeners])
    since = {
        u.user_id: (await sync_client.sync(u, filter_='{"room":{"timeline":{"limit":1}}}'))[
            "next_batch"
        ]
        for u in listeners
    }
    deadline = Deadline(TIME_CAP_S)
    each: list[float] = []
    slowest: list[float] = []
    after_ack: list[float] = []
    missed = 0

    async def listen(u: User, text: str, t0: asyncio.Future[float]) -> tuple[float, float] | None:
        # Bounded: a long-poll woken by something else (a receipt, a membership) polls again.
        for _ in range(5):
            body = await sync_client.sync(u, since=since[u.user_id], timeout_ms=POLL_TIMEOUT_MS)
            since[u.user_id] = body["next_batch"]
            if has_message(body, room_id, text):
                return time.perf_counter(), await t0
        return None

    for r in range(rounds):
        if deadline.expired:
            break
        text = f"fan {r} {secrets.token_hex(3)}"
        t0: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        polls = [asyncio.ensure_future(listen(u, text, t0)) for u in listeners]
        await asyncio.sleep(PARK_S)
        t0.set_result(time.perf_counter())
        await send_client.send_text(writer, room_id, text)
        acked = time.perf_counter()
        got = await asyncio.gather(*polls)
        seen = [g for g in got if g is not None]
        missed += len(got) - len(seen)
        each.extend(end - start for end, start in seen)
        # Below zero: that long-poll answered before the send's own reply arrived.
        after_ack.extend(end - acked for end, _ in seen)
        if seen:
            slowest.append(max(end - start for end, start in seen))
    return {
        "listeners": len(listeners),
        "rounds": len(slowest),
        "send_to_answer": summarize(each),
        "send_to_last_answer": summarize(slowest),
        "ack_to_answer": summarize(after_ack),
        "missed": missed,
        "capped": deadline.hit,
    }


Step = Callable[[list[Client], "Cluster", argparse.Namespace], Awaitable[dict[str, Any]]]


async def one_room(clients: list[Client], c: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    senders = c.users["send"][: args.senders]
    room_id = await clients[0].create_room(senders[0], name="one room")
    await bounded_gather(8, [partial(clients[0].join, u, room_id) for u in senders[1:]])
    return await sends(clients, senders, [room_id], args.sends)


async def own_rooms(clients: list[Client], c: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    senders = c.users["send"][: args.senders]
    rooms = await bounded_gather(
        4, [partial(clients[0].create_room, u, name="own room") for u in senders]
    )
    return await sends(clients, senders, list(rooms), args.sends)


async def fan(clients: list[Client], c: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    return await fan_out(clients[-1], clients[0], c.users["fan"], args.rounds)


async def wake(clients: list[Client], c: Cluster, args: argparse.Namespace) -> dict[str, Any]:
    return await fan_out(clients[-1], clients[0], c.users["wake"], args.rounds)


WORKLOADS: list[tuple[str, Step]] = [
    ("one room", one_room),
    ("own rooms", own_rooms),
    ("wake-up", wake),
    ("fan-out", fan),
]
ROWS = [
    ("one room", "16 senders, one room: messages/s", "messages_per_s"),
    ("one room", "  send p50 (ms)", "latency.p50_ms"),
    ("one room", "  send p95 (ms)", "latency.p95_ms"),
    ("one room", "  send p99 (ms)", "latency.p99_ms"),
    ("one room", "  sends refused 503 (room busy)", "busy_503"),
    ("one room", "  server CPU, all processes (s)", "cpu_s_total"),
    ("own rooms", "16 senders, 16 rooms: messages/s", "messages_per_s"),
    ("own rooms", "  send p50 (ms)", "latency.p50_ms"),
    ("own rooms", "  send p95 (ms)", "latency.p95_ms"),
    ("own rooms", "  send p99 (ms)", "latency.p99_ms"),
    ("own rooms", "  server CPU, all processes (s)", "cpu_s_total"),
    ("wake-up", "1 long-poll: send to its answer p50 (ms)", "send_to_answer.p50_ms"),
    ("wake-up", "  p95 (ms)", "send_to_answer.p95_ms"),
    ("wake-up", "  send's reply to the answer p50 (ms)", "ack_to_answer.p50_ms"),
    ("wake-up", "  send's reply to the answer p95 (ms)", "ack_to_answer.p95_ms"),
    ("fan-out", "20 long-polls: send to each one's answer p50 (ms)", "send_to_answer.p50_ms"),
    ("fan-out", "  p95 (ms)", "send_to_answer.p95_ms"),
    ("fan-out", "  send to the last of the listeners p50 (ms)", "send_to_last_answer.p50_ms"),
    ("fan-out", "  send to the last of the listeners p95 (ms)", "send_to_last_answer.p95_ms"),
    ("fan-out", "  send's reply to each answer p50 (ms)", "ack_to_answer.p50_ms"),
    ("fan-out", "  send's reply to each answer p95 (ms)", "ack_to_answer.p95_ms"),
    ("fan-out", "  server CPU, all processes (s)", "cpu_s_total"),
    ("fan-out", "  long-polls that missed the message", "missed"),
]


async def run_layout(admin_dsn: str, workers: int, args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-workers{workers}-"))
    cluster = Cluster(admin_dsn, workers, base)
    out: dict[str, Any] = {}
    try:
        t0 = time.monotonic()
        await cluster.start({"send": args.senders, "fan": args.listeners + 1, "wake": 2})
        print(f"  [{workers} workers] ready in {time.monotonic() - t0:.1f}s", flush=True)
        connector = aiohttp.TCPConnector(limit=400)
        async with aiohttp.ClientSession(connector=connector) as session:
            clients = [Client(p.url, session) for p in cluster.procs]
            for name, step in WORKLOADS:
                cpu0 = cluster.cpu()
                t1 = time.monotonic()
                res = await step(clients, cluster, args)
                cpu1 = cluster.cpu()
                res["cpu_s"] = {n: round(cpu1[n] - cpu0[n], 2) for n in cpu0}
                res["cpu_s_total"] = round(sum(res["cpu_s"].values()), 2)
                res["wall_s"] = round(time.monotonic() - t1, 2)
                out[name] = res
                print(f"  [{workers} workers] {name}: {json.dumps(res)}", flush=True)
        out["rss_kib"] = {p.name: rss_kib(p.process.pid)["VmRSS"] for p in cluster.procs}
    finally:
        await cluster.stop()
        if args.keep:
            print(f"  files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return out


def table(results: dict[str, Any]) -> str:
    names = [n for n in LAYOUTS if n in results]
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for workload, label, path in ROWS:
        cells = [fmt(dig(results[n].get(workload), path)) for n in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


async def run_all(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": machine_description(),
        "date": time.strftime("%F"),
        "commit": args.commit,
        "sizes": {
            "senders": args.senders,
            "sends_per_sender": args.sends,
            "listeners": args.listeners,
            "rounds": args.rounds,
        },
    }
    async with postgres() as dsn:
        for name, workers in LAYOUTS.items():
            if workers <= args.max_workers:
                results[name] = await run_layout(dsn, workers, args)
    print()
    print(f"Machine: {results['machine']}; commit {results['commit']}; PostgreSQL")
    print(table(results))
    if args.json:
        write_json(args.json, results)
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--senders", type=int, default=16)
    p.add_argument("--sends", type=int, default=40, help="messages per sender")
    p.add_argument("--listeners", type=int, default=20)
    p.add_argument("--rounds", type=int, default=30, help="fan-out rounds")
    p.add_argument("--max-workers", type=int, default=2, choices=[0, 1, 2])
    p.add_argument("--json", default=None, help="write the raw results to this file")
    p.add_argument("--keep", action="store_true", help="keep the servers' temp dirs and logs")
    args = p.parse_args()
    args.commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    asyncio.run(run_all(args))


if __name__ == "__main__":
    main()
