"""History across servers: the outbox written in the event's own transaction,
and /messages backfilling from a resident server over loopback TLS.

- A locally created event's outbox rows commit (or roll back) with the event
  itself, before any sender runs; a server restarted before it could send
  still delivers from its outbox.
- B's user joins A's room after 50 messages and pages back with /messages:
  B fetches the older history with /backfill, checks it, and returns every
  earlier message once, in order, ending at m.room.create with no ``end``.
  With history_visibility ``joined`` A gives nothing from before the join.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.app import RunningServer
from homeserver.rooms.persist import PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Queries
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register, send_text, settle, timeline_bodies
from tests.helpers import Api, User


def _pdu_rows_sql() -> str:
    return "SELECT destination, body_json FROM federation_outbox WHERE kind = 'pdu'"


async def _outbox_pdus(server: RunningServer) -> list[tuple[str, str]]:
    rows = await server.hs.db.fetchall(_pdu_rows_sql())
    return [(str(r[0]), str(json.loads(str(r[1])).get("content", {}).get("body"))) for r in rows]


async def _room_with_b(
    make_server: ServerFactory, preset: str = "public_chat", visibility: str | None = None
) -> tuple[RunningServer, RunningServer, Api, User, Api, User, str]:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    body: dict[str, Any] = {"preset": preset}
    if visibility is not None:
        body["initial_state"] = [
            {
                "type": "m.room.history_visibility",
                "state_key": "",
                "content": {"history_visibility": visibility},
            }
        ]
    r = await api_a.post("/createRoom", body, token=alice.access_token)
    assert r.status == 200, r.body
    return a, b, api_a, alice, api_b, bob, r.body["room_id"]


async def _join(api: Api, user: User, room_id: str, via: RunningServer) -> None:
    r = await api.post(f"/join/{q(room_id)}?via={q(name(via))}", {}, token=user.access_token)
    assert r.status == 200, r.body


async def test_outbox_rows_commit_with_the_event(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    a, b, api_a, alice, api_b, bob, room_id = await _room_with_b(make_server)
    await _join(api_b, bob, room_id, a)
    await settle(a, b)
    persister = a.hs.rooms_area.rooms.persister
    seen_in_txn: list[list[str]] = []

    async def probe(q_: Queries, stored: StoredEvent, plan: PersistPlan) -> None:
        # Runs after the federation hook, inside the same transaction: the
        # PDU's outbox row is already there, before any commit or send.
        rows = await q_.fetchall(
            "SELECT destination FROM federation_outbox WHERE kind = 'pdu' AND body_json LIKE $1",
            f"%{stored.event.content.get('body')}%",
        )
        seen_in_txn.append([str(r[0]) for r in rows])
        if stored.event.content.get("body") == "roll me back":
            raise RuntimeError("crash inside the transaction")

    persister.txn_hooks.append(probe)
    # B is stopped: nothing can be delivered, the rows stay in A's outbox.
    b_name = name(b)
    await api_b.__aexit__(None, None, None)
    await b.stop()
    await send_text(api_a, alice, room_id, "queued 1")
    assert seen_in_txn == [[b_name]]
    r = await api_a.put(
        f"/rooms/{q(room_id)}/send/m.room.message/t-crash",
        {"msgtype": "m.text", "body": "roll me back"},
        token=alice.access_token,
    )
    assert r.status == 500
    # The failed transaction took its outbox row with it, and the event.
    assert (b_name, "roll me back") not in await _outbox_pdus(a)
    assert "roll me back" not in await timeline_bodies(api_a, alice, room_id)
    await send_text(api_a, alice, room_id, "queued 2")
    persister.txn_hooks.remove(probe)
    assert [x for x in await _outbox_pdus(a) if x[0] == b_name] == [
        (b_name, "queued 1"),
        (b_name, "queued 2"),
    ]
    # A restarts before it could send; then B comes back: A catches up from its outbox.
    await api_a.__aexit__(None, None, None)
    a = await restart_server(a)
    assert [x for x in await _outbox_pdus(a) if x[0] == b_name] == [
        (b_name, "queued 1"),
        (b_name, "queued 2"),
    ]
    b = await restart_server(b)
    api_b = Api(b.client_url)
    await api_b.__aenter__()
    got = await eventually(
        lambda: timeline_bodies(api_b, bob, room_id), lambda x: x[-2:] == ["queued 1", "queued 2"]
    )
    assert got[-2:] == ["queued 1", "queued 2"]
    await settle(a, b)
    assert not [x for x in await _outbox_pdus(a) if x[0] == b_name]
    await api_b.__aexit__(None, None, None)


async def _page_all(api: Api, user: User, room_id: str, limit: int) -> list[list[dict[str, Any]]]:
    """Every /messages page backwards from now until there is no ``end``."""
    pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    for _ in range(100):
        path = f"/rooms/{q(room_id)}/messages?dir=b&limit={limit}"
        if token is not None:
            path += f"&from={q(token)}"
        r = await api.get(path, token=user.access_token)
        assert r.status == 200, r.body
        pages.append(r.body["chunk"])
        token = r.body.get("end")
        if token is None:
            return pages
    raise AssertionError("pagination did not end")


async def test_messages_backfills_history_from_before_the_join(
    make_server: ServerFactory,
) -> None:
    a, b, api_a, alice, api_b, bob, room_id = await _room_with_b(make_server)
    bodies = [f"m{i}" for i in range(50)]
    for body in bodies:
        await send_text(api_a, alice, room_id, body)
    await _join(api_b, bob, room_id, a)
    await send_text(api_a, alice, room_id, "after join")
    await settle(a, b)
    await eventually(lambda: timeline_bodies(api_b, bob, room_id), lambda x: "after join" in x)
    pages = await _page_all(api_b, bob, room_id, 15)
    events = [e for page in pages for e in page]
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)), "no duplicates"
    texts = [e["content"]["body"] for e in reversed(events) if e["type"] == "m.room.message"]
    assert texts == [*bodies, "after join"]
    # Newest first, down to the room's beginning: the last event is m.room.create.
    assert events[-1]["type"] == "m.room.create"
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in events)
    # The same order and events as the resident server has.
    a_events = [e for page in await _page_all(api_a, alice, room_id, 100) for e in page]
    assert ids == [e["event_id"] for e in a_events]
    # Backfilled history never shows up in /sync as new.
    r = await api_b.get("/sync?timeout=0", token=bob.access_token)
    since = r.body["next_batch"]
    r = await api_b.get(f"/sync?timeout=0&since={q(since)}", token=bob.access_token)
    assert room_id not in r.body.get("rooms", {}).get("join", {})
    # And a page of /messages again, from a fresh start, reads the stored history.
    again = [e for page in await _page_all(api_b, bob, room_id, 100) for e in page]
    assert [e["event_id"] for e in again] == ids
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_joined_visibility_shows_nothing_from_before_the_join(
    make_server: ServerFactory,
) -> None:
    a, b, api_a, alice, api_b, bob, room_id = await _room_with_b(make_server, visibility="joined")
    for i in range(10):
        await send_text(api_a, alice, room_id, f"secret {i}")
    await _join(api_b, bob, room_id, a)
    await send_text(api_a, alice, room_id, "after join")
    await settle(a, b)
    await eventually(lambda: timeline_bodies(api_b, bob, room_id), lambda x: "after join" in x)
    events = [e for page in await _page_all(api_b, bob, room_id, 10) for e in page]
    texts = [e["content"].get("body") for e in events if e["type"] == "m.room.message"]
    assert texts == ["after join"]
    # Only what came before the room turned ``joined`` (the default, shared,
    # applied there): the history_visibility event itself and all after it up
    # to the join stay hidden.
    before_join = events[[e.get("state_key") for e in events].index(bob.user_id) + 1 :]
    assert "m.room.history_visibility" not in [e["type"] for e in before_join]
    assert [e["type"] for e in before_join][-1] == "m.room.create"
    # The resident server refused: B stored no message from before the join.
    rows = await b.hs.db.fetchall("SELECT json FROM events WHERE event_type = 'm.room.message'")
    assert all("secret" not in str(r[0]) for r in rows)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
