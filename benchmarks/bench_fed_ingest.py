"""(6) Federation ingest: a scripted remote server pushes ``--ingest-pdus`` messages into one
room, in transactions of ``--ingest-batch``, one transaction at a time (as the spec has a
sender do per destination).

The remote server is ``tests/federation/scripted_peer.ScriptedPeer``: its own ed25519 key,
real HTTPS on 127.0.0.1, X-Matrix-signed requests, correctly hashed and signed events. Set-up
(not measured): a local user creates a public room, the peer joins it over make_join /
send_join, and every PDU is built and signed in advance, each on top of the one before (a
linear history), so the measured part is the server's work, not ours. Measured: PDUs/s
accepted (every transaction answered, per-PDU errors counted), the time until the local
user's ``/sync`` shows the last PDU, and how many of the PDUs the server kept (counted by
paging ``/messages`` back from the end).

Both servers trust the peer the way the interop tests have them: Myelin with
``federation.insecure_local`` (self-signed loopback peers), Synapse with certificate
checks off and loopback allowed (``tests/interop/synapse.py``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks.harness import Client, Deadline, Target, Workload, main, summarize

TIME_CAP_S = 300.0
SYNC_CAP_S = 120.0
SYNC_FILTER = json.dumps({"room": {"timeline": {"limit": 5}}}, separators=(",", ":"))


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ingest-pdus", type=int, default=5000)
    p.add_argument("--ingest-batch", type=int, default=50, help="PDUs per transaction")


def needs(args: argparse.Namespace) -> dict[str, tuple[int, bool]]:
    return {"ingest": (1, False)}


async def run(target: Target, client: Client, args: argparse.Namespace) -> dict[str, Any]:
    from tests.federation.scripted_peer import ScriptedPeer

    local = target.users["ingest"][0]
    room_id = await client.create_room(local, name="ingest", room_version="12")
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        async with ScriptedPeer(Path(tmp)) as peer:
            room = await peer.join(target.server_name, room_id, "juliet")
            answer_gap_fills(peer, room)
            sender = peer.user("juliet")
            pdus = []
            for i in range(args.ingest_pdus):
                event = peer.event(
                    room, "m.room.message", {"msgtype": "m.text", "body": f"pdu {i}"}, sender=sender
                )
                room.add(event)
                pdus.append(event.pdu)
            last_id = room.head[0]
            since = (await client.sync(local, filter_=SYNC_FILTER))["next_batch"]

            deadline = Deadline(TIME_CAP_S)
            txn_times: list[float] = []
            sent = rejected = 0
            t0 = time.perf_counter()
            for start in range(0, len(pdus), args.ingest_batch):
                if deadline.expired:
                    break
                batch = pdus[start : start + args.ingest_batch]
                s0 = time.perf_counter()
                reply = await peer.send_transaction(target.server_name, batch, timeout_s=120)
                txn_times.append(time.perf_counter() - s0)
                if reply.status != 200:
                    raise RuntimeError(f"/send answered {reply.status}: {reply.body!r:.300}")
                results = reply.body.get("pdus", {}) if isinstance(reply.body, dict) else {}
                rejected += sum(1 for r in results.values() if isinstance(r, dict) and r)
                sent += len(batch)
            ingest_s = time.perf_counter() - t0

            seen_s = await time_until_seen(client, local, since, room_id, last_id, t0)
            kept = await count_kept(client, local, room_id, sender, len(pdus))
    return {
        "pdus_sent": sent,
        "pdus_rejected": rejected,
        "accepted_per_s": round(sent / ingest_s, 1) if ingest_s else 0,
        "transaction": summarize(txn_times),
        "last_in_sync_s": None if seen_s is None else round(seen_s, 2),
        "lag_after_last_txn_s": None if seen_s is None else round(seen_s - ingest_s, 2),
        "kept": kept,
        "kept_per_s": round(kept / seen_s, 1) if seen_s else None,
        "capped": deadline.hit,
    }


def answer_gap_fills(peer: Any, room: Any) -> None:
    """Let the server fetch what it did not keep, as from a real remote server: the peer
    answers ``get_missing_events``, ``/event`` and ``/state_ids`` from the events it built.
    (Synapse stages inbound PDUs and drops part of a long queue, then fills the gaps.)"""
    from aiohttp import web

    from tests.federation.forks import missing_events

    async def gap(request: Any, params: dict[str, str], body: Any) -> web.Response:
        return web.json_response({"events": missing_events(room.events, body or {})})

    async def event(request: Any, params: dict[str, str], body: Any) -> web.Response:
        found = room.events.get(urllib.parse.unquote(params["eventId"]))
        if found is None:
            missing = {"errcode": "M_NOT_FOUND", "error": "no such event"}
            return web.json_response(missing, status=404)
        return web.json_response(
            {
                "origin": peer.server_name,
                "origin_server_ts": int(time.time() * 1000),
                "pdus": [found.pdu],
            }
        )

    async def state_ids(request: Any, params: dict[str, str], body: Any) -> web.Response:
        # Messages change no state: the state at any of them is the state after the join.
        ids = [e.event_id for e in room.state.values()]
        return web.json_response({"pdu_ids": ids, "auth_chain_ids": ids})

    peer.route("POST", "/_matrix/federation/v1/get_missing_events/{roomId}", gap)
    peer.route("GET", "/_matrix/federation/v1/event/{eventId}", event)
    peer.route("GET", "/_matrix/federation/v1/state_ids/{roomId}", state_ids)


async def time_until_seen(
    client: Client, user: Any, since: str, room_id: str, event_id: str, t0: float
) -> float | None:
    """Seconds from ``t0`` until a ``/sync`` of ``user`` carries ``event_id`` (None: never,
    within SYNC_CAP_S)."""
    deadline = Deadline(SYNC_CAP_S)
    while not deadline.expired:
        body = await client.sync(user, since=since, timeout_ms=10_000, filter_=SYNC_FILTER)
        since = body["next_batch"]
        timeline = body.get("rooms", {}).get("join", {}).get(room_id, {}).get("timeline", {})
        if any(e.get("event_id") == event_id for e in timeline.get("events", [])):
            return time.perf_counter() - t0
    return None


async def count_kept(client: Client, user: Any, room_id: str, sender: str, sent: int) -> int:
    """How many of the sender's messages ``/messages`` returns, paging back from the end."""
    q = urllib.parse.quote(room_id)
    params: dict[str, str] = {"dir": "b", "limit": "1000"}
    kept = 0
    for _ in range(sent // 1000 + 5):
        body = await client.request(
            "GET", f"/_matrix/client/v3/rooms/{q}/messages", user.access_token, params=params
        )
        chunk = body.get("chunk", [])
        kept += sum(
            1 for e in chunk if e.get("sender") == sender and e.get("type") == "m.room.message"
        )
        end = body.get("end")
        if not chunk or not end:
            break
        params["from"] = end
    return kept


WORKLOAD = Workload(
    "ingest",
    needs,
    run,
    [
        ("PDUs sent", "pdus_sent", False),
        ("PDUs accepted/s", "accepted_per_s", False),
        ("transaction of 50 p50 (ms)", "transaction.p50_ms", True),
        ("PDUs kept (in /messages)", "kept", False),
        ("start to last PDU in /sync (s)", "last_in_sync_s", True),
        ("last transaction to /sync (s)", "lag_after_last_txn_s", True),
    ],
)

if __name__ == "__main__":
    main([WORKLOAD], configure)
