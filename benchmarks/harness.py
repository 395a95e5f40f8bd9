"""Shared machinery of the benchmarks: servers under test, an HTTP client, timing, RSS.

Design note. Every benchmark measures the same workload, over HTTP on 127.0.0.1, against
Myelin and (when installed, see ``scripts/setup-synapse``) Synapse:

- Myelin runs as a subprocess (``python -m homeserver run --config ...``) so that its
  resident memory is read from ``/proc/PID/status`` exactly like Synapse's. Its config is
  generated in a temporary directory (rate limits off, SQLite unless ``MYELIN_BENCH_PG_DSN``
  names a PostgreSQL server, in which case a fresh database is created there and dropped).
- Users are provisioned before the measured part, without paying the password-hash cost
  for users that never log in: Myelin through its own services in-process
  (``HomeServer.build`` on the same database, before the subprocess starts); Synapse through
  its admin API (create without password, then "login as user").
- Every load loop has a fixed count and a time cap (``Deadline``); a loop that hits the cap
  stops and says so in its result, it never runs on.
- Only loopback: every URL here is ``http://127.0.0.1:PORT``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The PostgreSQL server both servers use when the engine is PostgreSQL: an administrative DSN
# (``postgresql://user@127.0.0.1:PORT/postgres``). ``run_all --engine postgres`` starts a
# throw-away cluster and sets it through ``use_postgres``; single scripts read the variable.
PG_DSN = os.environ.get("MYELIN_BENCH_PG_DSN", "")
START_TIMEOUT_S = 90.0
# Tokens' user-visible password for the users that log in during the login benchmark.
LOGIN_PASSWORD = "bench-" + secrets.token_hex(8)
INITIAL_SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 10}}}, separators=(",", ":"))


def use_postgres(dsn: str) -> None:
    """Run the next servers on PostgreSQL at ``dsn`` ("" for SQLite)."""
    global PG_DSN
    PG_DSN = dsn


async def create_pg_database(prefix: str) -> str:
    """A fresh database (UTF8, C collation, as both servers want) on ``PG_DSN``; its name."""
    import asyncpg

    name = prefix + secrets.token_hex(4)
    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(
            f"CREATE DATABASE {name} ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
        )
    finally:
        await conn.close()
    return name


async def pg_database_size(dsn: str, name: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT pg_database_size($1)", name))
    finally:
        await conn.close()


async def drop_pg_database(dsn: str, name: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@contextlib.contextmanager
def throwaway_postgres() -> Any:
    """A PostgreSQL cluster of our own (``scripts/pg-throwaway``) for one run; its DSN."""
    out = subprocess.run(
        [str(ROOT / "scripts" / "pg-throwaway"), "start"],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    env: dict[str, str] = {}
    for part in out.stdout.replace("\n", ";").split(";"):
        part = part.strip().removeprefix("export ").strip()
        if "=" in part:
            key, _, value = part.partition("=")
            env[key] = value.strip("'\"")
    try:
        yield env["MYELIN_TEST_PG_DSN"]
    finally:
        subprocess.run(
            [str(ROOT / "scripts" / "pg-throwaway"), "stop", env["MYELIN_PG_DIR"]],
            check=False,
            timeout=120,
        )


# ------------------------------------------------------------------ timing


class Deadline:
    """A time cap for one loop: ``expired`` turns true after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds
        self.hit = False

    @property
    def expired(self) -> bool:
        if time.monotonic() >= self.end:
            self.hit = True
        return self.hit


def summarize(samples_s: list[float]) -> dict[str, Any]:
    """Latency summary in milliseconds."""
    if not samples_s:
        return {"n": 0}
    ms = sorted(s * 1000 for s in samples_s)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, round(p / 100 * (len(ms) - 1)))]

    return {
        "n": len(ms),
        "mean_ms": round(statistics.fmean(ms), 2),
        "p50_ms": round(pct(50), 2),
        "p95_ms": round(pct(95), 2),
        "p99_ms": round(pct(99), 2),
        "max_ms": round(ms[-1], 2),
    }


# ------------------------------------------------------------------ client


class HttpError(Exception):
    pass


@dataclass
class User:
    user_id: str
    access_token: str
    localpart: str


class Client:
    """A thin JSON client on one aiohttp session, for one server."""

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        assert base_url.startswith("http://127.0.0.1:"), base_url
        self.base = base_url
        self.session = session
        self._txn = 0

    async def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        params: dict[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method,
            self.base + path,
            json=body,
            params=params,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as reply:
            raw = await reply.read()
            if reply.status >= 300:
                raise HttpError(f"{method} {path.split('?')[0]}: {reply.status} {raw[:300]!r}")
            return json.loads(raw) if raw else None

    def txn_id(self) -> str:
        self._txn += 1
        return f"b{self._txn}-{secrets.token_hex(3)}"

    async def create_room(self, user: User, **extra: Any) -> str:
        body = {"preset": "public_chat", **extra}
        reply = await self.request("POST", "/_matrix/client/v3/createRoom", user.access_token, body)
        return str(reply["room_id"])

    async def join(self, user: User, room_id: str) -> None:
        q = urllib.parse.quote(room_id)
        await self.request("POST", f"/_matrix/client/v3/join/{q}", user.access_token, {})

    async def send_text(self, user: User, room_id: str, body: str) -> str:
        q = urllib.parse.quote(room_id)
        path = f"/_matrix/client/v3/rooms/{q}/send/m.room.message/{self.txn_id()}"
        reply = await self.request(
            "PUT", path, user.access_token, {"msgtype": "m.text", "body": body}
        )
        return str(reply["event_id"])

    async def register(self, localpart: str, password: str) -> User:
        """Register over HTTP as a client does: the first POST gets the user-interactive auth
        session, the second completes it with ``m.login.dummy``."""
        path = "/_matrix/client/v3/register"
        body: dict[str, Any] = {"username": localpart, "password": password}
        async with self.session.post(self.base + path, json=body) as reply:
            first = await reply.json(content_type=None)
            if reply.status == 200:
                return User(first["user_id"], first["access_token"], localpart)
            if reply.status != 401 or "session" not in first:
                raise HttpError(f"POST {path}: {reply.status} {first!r:.300}")
        body["auth"] = {"type": "m.login.dummy", "session": first["session"]}
        reply_body = await self.request("POST", path, body=body)
        return User(reply_body["user_id"], reply_body["access_token"], localpart)

    async def login(self, localpart: str, password: str) -> User:
        body = {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": localpart},
            "password": password,
            "initial_device_display_name": "bench",
        }
        reply = await self.request("POST", "/_matrix/client/v3/login", body=body)
        return User(reply["user_id"], reply["access_token"], localpart)

    async def set_displayname(self, user: User, name: str) -> None:
        q = urllib.parse.quote(user.user_id)
        await self.request(
            "PUT",
            f"/_matrix/client/v3/profile/{q}/displayname",
            user.access_token,
            {"displayname": name},
        )

    async def sync(
        self, user: User, since: str | None = None, timeout_ms: int = 0, filter_: str | None = None
    ) -> Any:
        params = {"timeout": str(timeout_ms)}
        if since is not None:
            params["since"] = since
        if filter_ is not None:
            params["filter"] = filter_
        return await self.request(
            "GET",
            "/_matrix/client/v3/sync",
            user.access_token,
            params=params,
            timeout_s=timeout_ms / 1000 + 120,
        )


async def bounded_gather(limit: int, jobs: Iterable[Callable[[], Awaitable[Any]]]) -> list[Any]:
    """Run the jobs with at most ``limit`` in flight (a fixed, finite list)."""
    sem = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[Any]]) -> Any:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


# ------------------------------------------------------------------ process facts


def reset_peak_rss(pid: int) -> None:
    """Start a new VmHWM window (Linux ``clear_refs`` 5), so each workload has its own peak."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB."""
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process used so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def file_sizes(paths: Iterable[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def machine_description() -> str:
    mem_kib = 0
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), "
        f"{mem_kib / 1024 / 1024:.0f} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# ------------------------------------------------------------------ targets


@dataclass
class Target:
    """One server under test."""

    name: str
    client_url: str
    pid: int
    engine: str
    users: dict[str, list[User]] = field(default_factory=dict)
    # ``127.0.0.1:PORT``, reachable over HTTPS at ``federation_url`` (for the ingest workload).
    server_name: str = ""
    federation_url: str = ""

    async def db_size_bytes(self) -> int:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError


class MyelinTarget(Target):
    def __init__(self, base: Path, config_extra: dict[str, Any] | None = None) -> None:
        self.base = base
        # Merged into the generated config (nested mappings key by key), e.g. the joining
        # server's settings in the remote-join workload.
        self.config_extra = config_extra or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.pg_name: str | None = None
        self.pg_dsn = ""
        self.database_url = ""
        super().__init__("myelin", "", 0, "sqlite")

    async def prepare(self, needs: dict[str, tuple[int, bool]]) -> None:
        """Write config, create the database, provision users in-process, start the subprocess."""
        from homeserver.app import HomeServer
        from homeserver.config import load_config
        from homeserver.events.keys import encode_signing_key_line, generate_signing_key
        from homeserver.tls import write_self_signed

        self.base.mkdir(parents=True, exist_ok=True)
        if PG_DSN:
            self.engine = "postgresql"
            self.pg_dsn = PG_DSN
            self.pg_name = await create_pg_database("myelin_bench_")
            self.database_url = PG_DSN.rpartition("/")[0] + "/" + self.pg_name
        else:
            self.database_url = f"sqlite:///{self.base / 'homeserver.db'}"
        port = free_port()
        # Named by its federation address, so that a scripted remote server can reach it.
        fed_port = free_port()
        server_name = f"127.0.0.1:{fed_port}"
        self.server_name = server_name
        self.federation_url = f"https://{server_name}"
        config = {
            "server_name": server_name,
            "data_dir": str(self.base),
            "database_url": self.database_url,
            "client_listener": {"bind": "127.0.0.1", "port": port},
            "federation_listener": {"bind": "127.0.0.1", "port": fed_port},
            "registration": {"enabled": True},
            "rate_limits": {"enabled": False},
            "federation": {"insecure_local": True},
            "log_level": "WARNING",
        }
        merge_config(config, self.config_extra)
        key = generate_signing_key("a_" + secrets.token_hex(2))
        (self.base / "signing.key").write_text(encode_signing_key_line(key) + "\n")
        write_self_signed(server_name, self.base / "tls.crt", self.base / "tls.key")
        config_path = self.base / "homeserver.yaml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))

        hs = await HomeServer.build(load_config(str(config_path)))
        try:
            for prefix, (count, with_password) in needs.items():

                async def one(i: int, prefix: str = prefix, pw: bool = with_password) -> User:
                    localpart = f"{prefix}{i}"
                    user_id = hs.accounts.user_id_for(localpart)
                    await hs.accounts.create_account(user_id, LOGIN_PASSWORD if pw else None)
                    record = await hs.accounts.store.get_user(user_id)
                    assert record is not None
                    session = await hs.accounts.start_session(record, None, None, False)
                    return User(user_id, session.access_token, localpart)

                self.users[prefix] = await bounded_gather(
                    4,
                    [lambda i=i, one=one: one(i) for i in range(count)],  # type: ignore[misc]
                )
        finally:
            await hs.close()

        self.process = spawn_myelin(config_path, self.base / "output.log")
        self.pid = self.process.pid
        self.client_url = f"http://127.0.0.1:{port}"
        await wait_ready(self.client_url, self.process)

    async def db_size_bytes(self) -> int:
        if self.pg_name:
            return await pg_database_size(self.pg_dsn, self.pg_name)
        db = self.base / "homeserver.db"
        return file_sizes([db, db.with_name("homeserver.db-wal")])

    async def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
        if self.pg_name:
            await drop_pg_database(self.pg_dsn, self.pg_name)


class SynapseTarget(Target):
    def __init__(self, base: Path) -> None:
        self.base = base
        self.server: Any = None
        self.pg_name: str | None = None
        self.pg_dsn = ""
        super().__init__("synapse", "", 0, "sqlite")

    async def prepare(self, needs: dict[str, tuple[int, bool]]) -> None:
        from tests.interop.synapse import start_synapse

        overrides: dict[str, Any] = {}
        if PG_DSN:
            # Synapse's psycopg2 backend (the ``postgres`` extra, see scripts/setup-synapse)
            # on a database with C collation, which Synapse insists on.
            self.engine = "postgresql"
            self.pg_dsn = PG_DSN
            self.pg_name = await create_pg_database("synapse_bench_")
            dsn = urllib.parse.urlsplit(PG_DSN)
            overrides["database"] = {
                "name": "psycopg2",
                "args": {
                    "user": dsn.username or "postgres",
                    "password": dsn.password or "",
                    "host": dsn.hostname or "127.0.0.1",
                    "port": dsn.port or 5432,
                    "database": self.pg_name,
                    "cp_min": 5,
                    "cp_max": 10,
                },
            }
        self.server = await asyncio.to_thread(start_synapse, self.base, **overrides)
        assert self.server.process is not None
        self.pid = self.server.process.pid
        self.client_url = self.server.client_url
        self.server_name = self.server.server_name
        self.federation_url = self.server.federation_url
        admin = await asyncio.to_thread(self.server.register, "benchadmin", None, admin=True)
        server_name = self.server.server_name
        async with aiohttp.ClientSession() as session:
            client = Client(self.client_url, session)

            async def one(prefix: str, i: int, pw: bool) -> User:
                localpart = f"{prefix}{i}"
                user_id = f"@{localpart}:{server_name}"
                q = urllib.parse.quote(user_id)
                body: dict[str, Any] = {"displayname": localpart}
                if pw:
                    body["password"] = LOGIN_PASSWORD
                await client.request(
                    "PUT", f"/_synapse/admin/v2/users/{q}", admin.access_token, body
                )
                reply = await client.request(
                    "POST", f"/_synapse/admin/v1/users/{q}/login", admin.access_token, {}
                )
                return User(user_id, reply["access_token"], localpart)

            for prefix, (count, with_password) in needs.items():
                self.users[prefix] = await bounded_gather(
                    8,
                    [
                        lambda i=i, p=prefix, w=with_password: one(p, i, w)  # type: ignore[misc]
                        for i in range(count)
                    ],
                )

    async def db_size_bytes(self) -> int:
        if self.pg_name:
            return await pg_database_size(self.pg_dsn, self.pg_name)
        db = self.base / "homeserver.db"
        return file_sizes([db, db.with_name("homeserver.db-wal")])

    async def stop(self) -> None:
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
        if self.pg_name:
            await drop_pg_database(self.pg_dsn, self.pg_name)


def merge_config(into: dict[str, Any], extra: dict[str, Any]) -> None:
    """Merge ``extra`` into ``into`` in place: mappings key by key, anything else replaced."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            merge_config(into[key], value)
        else:
            into[key] = value


def spawn_myelin(config_path: Path, output: Path) -> subprocess.Popen[bytes]:
    """``python -m homeserver run`` in its own session, output to a file. With
    ``MYELIN_BENCH_PYINSTRUMENT=FILE.html`` (or ``.txt``) the server runs under pyinstrument
    (the ``dev`` extra), which writes its profile to that file when the server stops;
    ``SERVER`` in the name becomes the server's temp dir name, so the two servers of
    ``bench_remote_join`` write a profile each."""
    command = [sys.executable, "-m", "homeserver", "run", "--config", str(config_path)]
    profile = os.environ.get("MYELIN_BENCH_PYINSTRUMENT")
    if profile:
        renderer = "html" if profile.endswith(".html") else "text"
        if profile.endswith(".pyisession"):
            renderer = "pyisession"  # for ``pyinstrument --load FILE`` with any renderer
        profile = profile.replace("SERVER", config_path.parent.name)
        command[1:2] = ["-m", "pyinstrument", "-r", renderer, "-o", profile, "-m"]
    with output.open("ab") as out:
        return subprocess.Popen(
            command,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def write_json(path: str, data: Any) -> None:
    Path(path).write_text(json.dumps(data, indent=2))


async def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode} during start-up")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url + "/_matrix/client/versions") as r:
                    if r.status == 200:
                        return
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start in time")
            await asyncio.sleep(0.1)


def synapse_available() -> bool:
    from tests.interop.synapse import synapse_installed

    return synapse_installed()


# ------------------------------------------------------------------ running workloads


@dataclass
class Workload:
    """One benchmark: which users it needs and how to run it against one target."""

    name: str
    needs: Callable[[argparse.Namespace], dict[str, tuple[int, bool]]]
    run: Callable[[Target, Client, argparse.Namespace], Awaitable[dict[str, Any]]]
    # (label, path into the result, lower_is_better) rows for the comparison table.
    rows: list[tuple[str, str, bool]]


def add_common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-synapse", action="store_true", help="measure Myelin only")
    p.add_argument("--only", choices=["myelin", "synapse"], default=None)
    p.add_argument("--json", default=None, help="write the raw results to this file")
    p.add_argument("--keep", action="store_true", help="keep the servers' temp dirs")


@contextlib.asynccontextmanager
async def started(
    kind: str,
    needs: dict[str, tuple[int, bool]],
    keep: bool,
    myelin_config_extra: dict[str, Any] | None = None,
) -> AsyncIterator[Target]:
    base = Path(tempfile.mkdtemp(prefix=f"bench-{kind}-"))
    target: MyelinTarget | SynapseTarget = (
        MyelinTarget(base, myelin_config_extra) if kind == "myelin" else SynapseTarget(base)
    )
    try:
        t0 = time.monotonic()
        await target.prepare(needs)
        print(f"  [{kind}] ready in {time.monotonic() - t0:.1f}s (pid {target.pid})", flush=True)
        yield target
    finally:
        await target.stop()
        if keep:
            print(f"  [{kind}] files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


async def run_workloads(
    workloads: list[Workload], args: argparse.Namespace, print_results: bool = True
) -> dict[str, Any]:
    kinds = ["myelin", "synapse"]
    if args.only:
        kinds = [args.only]
    elif args.no_synapse or not synapse_available():
        if not args.no_synapse:
            print("Synapse is not installed (scripts/setup-synapse); measuring Myelin only")
        kinds = ["myelin"]
    needs: dict[str, tuple[int, bool]] = {}
    for w in workloads:
        needs.update(w.needs(args))
    results: dict[str, Any] = {
        "machine": machine_description(),
        "date": time.strftime("%F"),
        "engine_label": "PostgreSQL" if PG_DSN else "SQLite",
    }
    for kind in kinds:
        per: dict[str, Any] = {}
        async with started(kind, needs, args.keep) as target:
            per["engine"] = target.engine
            per["rss_start"] = rss_kib(target.pid)
            print(f"  [{kind}] idle: {json.dumps({'rss_start': per['rss_start']})}", flush=True)
            connector = aiohttp.TCPConnector(limit=200)
            async with aiohttp.ClientSession(connector=connector) as session:
                client = Client(target.client_url, session)
                for w in workloads:
                    print(f"  [{kind}] {w.name} ...", flush=True)
                    t0 = time.monotonic()
                    cpu0 = cpu_seconds(target.pid)
                    reset_peak_rss(target.pid)
                    try:
                        res = await w.run(target, client, args)
                    except Exception as exc:  # one workload failing is a result too
                        res = {"error": f"{type(exc).__name__}: {exc}"[:500]}
                    res["server_cpu_s"] = round(cpu_seconds(target.pid) - cpu0, 2)
                    res["wall_s"] = round(time.monotonic() - t0, 2)
                    res["rss_after"] = rss_kib(target.pid)
                    per[w.name] = res
                    print(f"  [{kind}] {w.name}: {json.dumps(res)}", flush=True)
            per["db_bytes"] = await target.db_size_bytes()
        results[kind] = per
    if print_results:
        print_table(workloads, [results])
    if args.json and print_results:
        write_json(args.json, results)
    return results


def table_rows(workload: Workload) -> list[tuple[str, str, bool]]:
    return [
        *workload.rows,
        ("server CPU (s)", "server_cpu_s", True),
        ("RSS after (MiB)", "rss_after.VmRSS", True),
        ("peak RSS, VmHWM (MiB)", "rss_after.VmHWM", True),
    ]


def ratio_cell(m: Any, s: Any, lower_better: bool) -> str:
    """Synapse/Myelin for costs, Myelin/Synapse for throughputs: > 1 means Myelin is better."""
    if isinstance(m, int | float) and isinstance(s, int | float) and m and s:
        return f"{(s / m if lower_better else m / s):.2f}x"
    return ""


def table_lines(workloads: list[Workload], runs: list[dict[str, Any]]) -> list[str]:
    """One markdown table; per run (one engine) a Myelin, a Synapse and a ratio column."""
    head = ["workload", "metric"]
    for run in runs:
        eng = run.get("engine_label", "")
        head += [f"Myelin {eng}".strip(), f"Synapse {eng}".strip(), "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (3 * len(runs))]

    def mib(v: Any) -> Any:
        return None if v is None else round(v / 1024, 1)

    for label, path in (("RSS idle, after start (MiB)", "rss_start.VmRSS"),):
        cells = ["all", label]
        for run in runs:
            m, s = mib(dig(run.get("myelin"), path)), mib(dig(run.get("synapse"), path))
            cells += [fmt(m), fmt(s), ratio_cell(m, s, True)]
        lines.append("| " + " | ".join(cells) + " |")
    for w in workloads:
        for label, path, lower_better in table_rows(w):
            cells = [w.name, label]
            for run in runs:
                m = dig(dig(run.get("myelin"), w.name), path)
                s = dig(dig(run.get("synapse"), w.name), path)
                if path.startswith("rss_after"):
                    m, s = mib(m), mib(s)
                cells += [fmt(m), fmt(s), ratio_cell(m, s, lower_better)]
            lines.append("| " + " | ".join(cells) + " |")
    cells = ["all", "database size (MiB)"]
    for run in runs:
        m = dig(run.get("myelin"), "db_bytes")
        s = dig(run.get("synapse"), "db_bytes")
        m = None if m is None else round(m / 1048576, 1)
        s = None if s is None else round(s / 1048576, 1)
        cells += [fmt(m), fmt(s), ratio_cell(m, s, True)]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def print_table(workloads: list[Workload], runs: list[dict[str, Any]]) -> None:
    print()
    print(f"Machine: {runs[0]['machine']}")
    print("Ratio > 1 means Myelin is better (faster, leaner or higher throughput).")
    print("\n".join(table_lines(workloads, runs)))
    for run in runs:
        for kind in ("myelin", "synapse"):
            for w in workloads:
                err = dig(dig(run.get(kind), w.name), "error")
                if err:
                    print(f"{kind} {run.get('engine_label')} {w.name}: FAILED: {err}")


def dig(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return str(v)


def main(workloads: list[Workload], configure: Callable[[argparse.ArgumentParser], None]) -> None:
    p = argparse.ArgumentParser()
    add_common_args(p)
    configure(p)
    args = p.parse_args()
    asyncio.run(run_workloads(workloads, args))
