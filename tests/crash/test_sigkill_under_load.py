"""SIGKILL under load, ten times in a row: nothing acknowledged is lost or doubled.

Server A is a real `myelin run` subprocess; server B a real Myelin in this
process, joined to A's room over real TLS. Two local users of A and one user
of B send messages without pause; A is killed with SIGKILL at a random moment
(seeded, the seed is in the failure message), restarted on the same data, and
killed again, ROUNDS times. A send cut off by the kill is retried with the
same transaction id, as a client would, until it is acknowledged.

Afterwards, with A running once more: every acknowledged event is in A's room
exactly once, in one linear order (/messages backwards is /messages forwards
reversed, and each sender's messages keep their order); A's outbox has
delivered every one of A's events to B, and B's to A; the reader's /sync
notification count equals the messages it has not read, and every message has
its push action row; and after a last SIGKILL the database passes
``PRAGMA integrity_check`` (SQLite) and the consistency queries of every table
group (both engines).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from homeserver.app import RunningServer
from homeserver.storage.database import connect
from tests.conftest import ENGINE, ServerFactory, _create_pg_database, free_port, write_data_dir
from tests.crash.consistency import missing_push_actions_sql, sqlite_integrity, violations
from tests.crash.victim import Victim
from tests.federation.fedutil import FAST_RETRY

ROUNDS = 10
# Time A runs under load before each kill (seconds, uniform), counted from the
# first local send acknowledged after its restart.
UP_MIN_S, UP_MAX_S = 0.2, 1.5
# Bounds of the whole test: no loop may outlive them.
SEND_DEADLINE_S = 240.0
CATCH_UP_S = 90.0
V3 = "/_matrix/client/v3"


def q(value: str) -> str:
    return quote(value, safe="")


class Client:
    """A client of one server over real HTTP; connection errors propagate."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

    async def call(
        self, method: str, path: str, token: str | None = None, body: Any = None
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base_url + V3 + path, json=body, headers=headers
        ) as r:
            return r.status, await r.json(content_type=None)

    async def ok(self, method: str, path: str, token: str | None = None, body: Any = None) -> Any:
        status, answer = await self.call(method, path, token, body)
        assert status == 200, (method, path, status, answer)
        return answer

    async def register(self, name: str) -> tuple[str, str]:
        body = {"username": name, "password": "pw-" + name, "auth": {"type": "m.login.dummy"}}
        answer = await self.ok("POST", "/register", body=body)
        return str(answer["user_id"]), str(answer["access_token"])

    async def close(self) -> None:
        await self.session.close()


@dataclass
class Sender:
    """One user sending numbered messages; ``acked`` maps sequence number -> event id."""

    tag: str
    client: Client
    token: str
    room_id: str
    acked: dict[int, str] = field(default_factory=dict)
    retries: int = 0

    async def run(self, stop: asyncio.Event, deadline: float) -> None:
        i = 0
        while not stop.is_set():
            await self._send(i, deadline)
            i += 1
            await asyncio.sleep(0.005)  # let the other senders in; the load stays high

    async def _send(self, i: int, deadline: float) -> None:
        path = f"/rooms/{q(self.room_id)}/send/m.room.message/{self.tag}-{i}"
        content = {"msgtype": "m.text", "body": f"{self.tag} {i}"}
        while True:
            assert time.monotonic() < deadline, f"{self.tag}: send {i} never acknowledged"
            try:
                status, answer = await self.client.call("PUT", path, self.token, content)
            except (aiohttp.ClientError, TimeoutError):
                self.retries += 1  # the server died under us: retry the same txn id
                await asyncio.sleep(0.05)
                continue
            assert status == 200, (self.tag, i, status, answer)
            self.acked[i] = str(answer["event_id"])
            return


async def paginate(
    client: Client, token: str, room_id: str, direction: str
) -> list[dict[str, Any]]:
    """Every event of the room's timeline, paging /messages in ``direction``."""
    events: list[dict[str, Any]] = []
    frm: str | None = None
    for _ in range(1000):
        path = f"/rooms/{q(room_id)}/messages?dir={direction}&limit=500"
        if frm is not None:
            path += f"&from={q(frm)}"
        page = await client.ok("GET", path, token)
        events += page["chunk"]
        if not page["chunk"] or "end" not in page:
            return events
        frm = page["end"]
    raise AssertionError("/messages never ended")


async def local_sends_flowing(local: list[Sender], tasks: list[asyncio.Task[None]]) -> None:
    """Wait until each local sender has had a send acknowledged since now."""
    before = [len(s.acked) for s in local]
    deadline = time.monotonic() + CATCH_UP_S
    while any(len(s.acked) <= n for s, n in zip(local, before, strict=True)):
        for t in tasks:
            if t.done():
                t.result()  # a sender failed: show why
        assert time.monotonic() < deadline, "local sends never got through after a restart"
        await asyncio.sleep(0.01)


async def all_notifications(client: Client, token: str) -> list[str]:
    """The event ids of every /notifications page, newest first."""
    out: list[str] = []
    path = "/notifications?limit=100"
    for _ in range(1000):
        page = await client.ok("GET", path, token)
        out += [str(n["event"]["event_id"]) for n in page["notifications"]]
        if "next_token" not in page:
            return out
        path = f"/notifications?limit=100&from={q(page['next_token'])}"
    raise AssertionError("/notifications never ended")


def message_ids(events: list[dict[str, Any]]) -> list[str]:
    return [str(e["event_id"]) for e in events if e["type"] == "m.room.message"]


async def wait_for_ids(
    client: Client, token: str, room_id: str, wanted: set[str]
) -> list[dict[str, Any]]:
    """The room's timeline (oldest first) once it holds every id in ``wanted``."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        events = list(reversed(await paginate(client, token, room_id, "b")))
        missing = wanted - set(message_ids(events))
        if not missing or time.monotonic() > deadline:
            assert not missing, f"{len(missing)} acknowledged events never arrived"
            return events
        await asyncio.sleep(0.2)


async def test_sigkill_ten_times_under_load(tmp_path: Path, make_server: ServerFactory) -> None:
    seed = int(os.environ.get("MYELIN_CRASH_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    where = f"(seed {seed}; MYELIN_CRASH_SEED={seed} repeats the kill moments)"

    # Server A: the victim, a subprocess on a database of its own.
    fed_port = free_port()
    a_name = f"127.0.0.1:{fed_port}"
    data_dir = tmp_path / "victim"
    write_data_dir(data_dir, a_name)
    drop = None
    if ENGINE == "postgres":
        url, drop = await _create_pg_database()
    else:
        url = f"sqlite:///{data_dir / 'homeserver.db'}"
    victim = Victim(
        data_dir,
        {
            "server_name": a_name,
            "data_dir": str(data_dir),
            "database_url": url,
            "client_listener": {"bind": "127.0.0.1", "port": free_port()},
            "federation_listener": {"bind": "127.0.0.1", "port": fed_port},
            "registration": {"enabled": True},
            "rate_limits": {"enabled": False},
            "federation": {"insecure_local": True, **FAST_RETRY["federation"]},
            "log_level": "WARNING",
        },
    )
    # Server B: the federating peer, in this process.
    b: RunningServer = await make_server(federated=True, **FAST_RETRY)
    api_a = Client(victim.client_url)
    api_b = Client(b.client_url)
    try:
        await victim.start()
        _, creator_token = await api_a.register("creator")
        reader, reader_token = await api_a.register("reader")
        _, a1_token = await api_a.register("a1")
        _, a2_token = await api_a.register("a2")
        _, b1_token = await api_b.register("b1")
        room = await api_a.ok("POST", "/createRoom", creator_token, {"preset": "public_chat"})
        room_id = str(room["room_id"])
        for token in (reader_token, a1_token, a2_token):
            await api_a.ok("POST", f"/join/{q(room_id)}", token, {})
        await api_b.ok("POST", f"/join/{q(room_id)}?via={q(a_name)}", b1_token, {})

        senders = [
            Sender("a1", api_a, a1_token, room_id),
            Sender("a2", api_a, a2_token, room_id),
            Sender("b1", api_b, b1_token, room_id),
        ]
        stop = asyncio.Event()
        deadline = time.monotonic() + SEND_DEADLINE_S
        tasks = [asyncio.create_task(s.run(stop, deadline)) for s in senders]
        try:
            for _ in range(ROUNDS):
                # Kill only once local sends flow again (after a restart A may first
                # be busy with B's backlog), so every kill lands under local load too.
                await local_sends_flowing(senders[:2], tasks)
                await asyncio.sleep(rng.uniform(UP_MIN_S, UP_MAX_S))
                await victim.kill()
                await victim.start()
            await asyncio.sleep(UP_MIN_S)
        finally:
            stop.set()
            done, _ = await asyncio.wait(tasks, timeout=SEND_DEADLINE_S)
            for t in tasks:
                if t not in done:
                    t.cancel()
        for t in tasks:
            t.result()
        assert victim.starts == ROUNDS + 1
        local = {eid for s in senders[:2] for eid in s.acked.values()}
        remote = set(senders[2].acked.values())
        acked = local | remote
        assert len(acked) == sum(len(s.acked) for s in senders), "one event id acked twice"
        assert all(s.acked for s in senders), f"a sender never got through {where}"

        # A holds every acknowledged event exactly once, in one linear order.
        timeline = await wait_for_ids(api_a, reader_token, room_id, acked)
        ids = message_ids(timeline)
        assert len(ids) == len(set(ids)), f"an event appears twice in /messages {where}"
        assert set(ids) == acked, f"events nobody acknowledged appeared {where}"
        forwards = message_ids(await paginate(api_a, reader_token, room_id, "f"))
        assert forwards == ids, f"/messages forwards is not backwards reversed {where}"
        for s in senders:
            order = [ids.index(s.acked[i]) for i in sorted(s.acked)]
            assert order == sorted(order), f"{s.tag}'s messages out of order {where}"

        # The outbox delivered every one of A's events to B (and B's to A, above).
        b_ids = message_ids(await wait_for_ids(api_b, b1_token, room_id, acked))
        assert len(b_ids) == len(set(b_ids)) and set(b_ids) == acked, where

        # Notification counts agree with the events: the reader read nothing.
        flt = json.dumps({"room": {"timeline": {"limit": 1}}})
        body = await api_a.ok("GET", f"/sync?timeout=0&filter={q(flt)}", reader_token)
        counts = body["rooms"]["join"][room_id]["unread_notifications"]
        assert counts == {"notification_count": len(acked), "highlight_count": 0}, where
        notified = await all_notifications(api_a, reader_token)
        assert len(notified) == len(set(notified)) and set(notified) == acked, where
        # A receipt on the newest event (in stream order: /sync's timeline) clears them.
        newest = body["rooms"]["join"][room_id]["timeline"]["events"][-1]["event_id"]
        await api_a.ok("POST", f"/rooms/{q(room_id)}/receipt/m.read/{q(newest)}", reader_token, {})
        body = await api_a.ok("GET", f"/sync?timeout=0&filter={q(flt)}", reader_token)
        counts = body["rooms"]["join"][room_id]["unread_notifications"]
        assert counts == {"notification_count": 0, "highlight_count": 0}, where

        # A last crash, then the database that it leaves.
        await victim.kill()
        if ENGINE == "sqlite":
            path = str(data_dir / "homeserver.db")
            integrity, fks = sqlite_integrity(path)
            assert integrity == "ok", integrity
            assert fks == [], fks
        db = await connect(url)
        try:
            assert await violations(db) == {}, where
            missing = await db.fetchval(missing_push_actions_sql(), room_id, reader)
            assert missing == 0, f"{missing} messages without the reader's push action {where}"
        finally:
            await db.close()
        print(
            f"crash test {where}: {len(acked)} events acknowledged"
            f" ({len(local)} on A, {len(remote)} from B), "
            f"{sum(s.retries for s in senders)} send attempts retried across the kills"
        )
    except BaseException:
        print(f"crash test failed {where}; victim's log:\n{victim.log_tail(80)}")
        raise
    finally:
        if victim.proc is not None:
            await victim.kill()
        await api_a.close()
        await api_b.close()
        if drop is not None:
            await drop()
