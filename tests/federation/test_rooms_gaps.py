"""Receiving PDUs across a gap, and soft-failing events that pass against the
state before them but not against the room's current state (server-server
"Checks performed on receipt of a PDU", steps 5-6, and "Soft failure").

Two real servers. In the first test B misses more events than one
/get_missing_events call returns (the outbox rows A kept for B are deleted,
as if those transactions were lost), so B bridges the rest with /state_ids
and /event and must still end with A's current state. In the second, A
delivers events by a user whom B has meanwhile banned: B stores them but
never shows them.
"""

from __future__ import annotations

import json
from typing import Any

from federation.pdu.pipeline import MISSING_EVENTS_LIMIT
from homeserver.app import RunningServer
from homeserver.events.builder import build_event
from homeserver.events.model import Event
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import (
    name,
    q,
    register,
    send_text,
    settle,
    state_content,
    timeline_bodies,
    timeline_sync,
)
from tests.federation.test_rooms_faults import send_txn
from tests.helpers import Api, User


def timeline_ids(body: dict[str, Any], room_id: str) -> list[str]:
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e["event_id"] for e in room.get("timeline", {}).get("events", [])]


async def join(api: Api, user: User, room_id: str, via: RunningServer) -> None:
    r = await api.post(f"/join/{q(room_id)}?via={q(name(via))}", {}, token=user.access_token)
    assert r.status == 200, r.body


async def set_topic(api: Api, user: User, room_id: str, topic: str) -> str:
    r = await api.put(
        f"/rooms/{q(room_id)}/state/m.room.topic", {"topic": topic}, token=user.access_token
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


async def test_gap_beyond_get_missing_events_is_bridged_with_state_ids(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    await join(api_b, bob, room_id, a)
    await set_topic(api_a, alice, room_id, "old topic")
    await send_text(api_a, alice, room_id, "before")
    await settle(a, b)
    assert (await state_content(api_b, bob, room_id, "m.room.topic")) == {"topic": "old topic"}
    since = (await timeline_sync(api_b, bob))["next_batch"]
    b_name = name(b)

    await api_b.__aexit__(None, None, None)
    await b.stop()  # restart_server below starts it again from the same data
    # The topic change lies deeper than one /get_missing_events answer reaches.
    topic_id = await set_topic(api_a, alice, room_id, "new topic")
    gap = [f"gap {i}" for i in range(MISSING_EVENTS_LIMIT + 5)]
    gap_ids = [await send_text(api_a, alice, room_id, body) for body in gap]
    newest_id = await send_text(api_a, alice, room_id, "newest")

    # Lose every transaction for B but the one carrying the newest event: the
    # outbox rows are deleted (A is then restarted, dropping the batch its
    # sender holds in memory for retries).
    db = a.hs.db
    rows = await db.fetchall(
        "SELECT outbox_id, body_json FROM federation_outbox"
        " WHERE destination = $1 AND kind = 'pdu' ORDER BY outbox_id",
        b_name,
    )
    assert json.loads(rows[-1][1])["content"]["body"] == "newest"
    assert len(rows) >= len(gap) + 2
    await db.execute(
        "DELETE FROM federation_outbox WHERE destination = $1 AND kind = 'pdu' AND outbox_id < $2",
        b_name,
        int(rows[-1][0]),
    )
    # A first: until it restarts, its sender may retry the batch it holds in memory,
    # which would deliver the gap to a B that is already back.
    await api_a.__aexit__(None, None, None)
    a = await restart_server(a)
    api_a = Api(a.client_url)
    await api_a.__aenter__()
    b = await restart_server(b)
    api_b = Api(b.client_url)
    await api_b.__aenter__()

    store_b = b.hs.rooms_area.rooms.events
    got = await eventually(lambda: store_b.by_id(newest_id), lambda s: s is not None)
    assert got is not None and not got.outlier and got.rejected_reason is None
    assert not got.soft_failed and got.stream_ordering is not None
    # The last MISSING_EVENTS_LIMIT events came through /get_missing_events into
    # the timeline; the older part of the gap did not, but the topic change in
    # it was fetched with /event (as an outlier) for the state at the gap.
    fetched = await store_b.by_ids(gap_ids)
    timeline = [i for i in gap_ids if i in fetched and not fetched[i].outlier]
    assert timeline == gap_ids[-MISSING_EVENTS_LIMIT:]
    assert all(i not in fetched or fetched[i].outlier for i in gap_ids[:-MISSING_EVENTS_LIMIT])
    topic = await store_b.by_id(topic_id)
    assert topic is not None and topic.outlier

    # B's current state is A's: the topic set during the gap.
    assert (await state_content(api_b, bob, room_id, "m.room.topic")) == {"topic": "new topic"}
    assert (await state_content(api_a, alice, room_id, "m.room.topic")) == {"topic": "new topic"}
    # Bob's incremental sync shows the newest message (after the fetched ones).
    ids = timeline_ids(await timeline_sync(api_b, bob, since), room_id)
    assert ids[-1] == newest_id
    assert ids[-1 - MISSING_EVENTS_LIMIT : -1] == gap_ids[-MISSING_EVENTS_LIMIT:]

    # Paging back from the sync's prev_batch (just before the oldest event
    # get_missing_events gave) fills the hole below it with /backfill: the page
    # starts with the gap's events, not with what B held from before the gap.
    flt = json.dumps({"room": {"timeline": {"limit": MISSING_EVENTS_LIMIT + 1}}})
    r = await api_b.get(f"/sync?timeout=0&filter={q(flt)}", token=bob.access_token)
    timeline = r.body["rooms"]["join"][room_id]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == [
        *gap_ids[-MISSING_EVENTS_LIMIT:],
        newest_id,
    ]
    r = await api_b.get(
        f"/rooms/{q(room_id)}/messages?dir=b&limit=3&from={q(timeline['prev_batch'])}",
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    older = gap_ids[:-MISSING_EVENTS_LIMIT]
    assert [e["event_id"] for e in r.body["chunk"]] == older[::-1][:3]

    # The room goes on: bob's reply builds on the newest event (and on B's older
    # extremity, which nothing B holds descends from while the hole stays) and
    # reaches A.
    reply = await send_text(api_b, bob, room_id, "bob is back")
    stored = await store_b.by_id(reply)
    assert stored is not None and newest_id in stored.event.prev_event_ids
    await settle(a, b)
    assert (await timeline_bodies(api_a, alice, room_id))[-2:] == ["newest", "bob is back"]
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def build_on_current(
    a: RunningServer, room_id: str, sender: str, ev_type: str, content: dict[str, Any]
) -> list[Event]:
    """Events by ``sender`` (a user of A) built on A's graph as it is now and
    signed with A's key, but not stored on A: a message, then ``ev_type`` with
    ``content`` after it."""
    rooms = a.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    ext = await rooms.events.extremities(room.room_nid)
    wanted = [("m.room.power_levels", ""), ("m.room.member", sender)]
    if not room.version.room_id_from_create_event:
        wanted.append(("m.room.create", ""))
    state = await rooms.current_state(room, wanted)
    prev = [e.event.event_id for e in ext]
    depth = max(e.event.depth for e in ext) + 1
    out: list[Event] = []
    for t, c in (
        ("m.room.message", {"msgtype": "m.text", "body": "from carol"}),
        (ev_type, content),
    ):
        fields: dict[str, Any] = {
            "room_id": room_id,
            "type": t,
            "sender": sender,
            "content": c,
            "prev_events": prev,
            "auth_events": [s.event.event_id for s in state.values()],
            "depth": depth,
            "origin_server_ts": a.hs.clock.now_ms(),
        }
        if t == "m.room.topic":
            fields["state_key"] = ""
        ev = build_event(room.version, fields, name(a), a.hs.signing_key)
        out.append(ev)
        prev, depth = [ev.event_id], depth + 1
    return out


async def test_event_from_a_user_banned_meanwhile_is_soft_failed(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, **FAST_RETRY)
    b = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    _, carol = await register(a, "carol")
    api_b, bob = await register(b, "bob")
    r = await api_a.post(
        "/createRoom",
        {
            "preset": "public_chat",
            "power_level_content_override": {
                "users": {bob.user_id: 100, carol.user_id: 50},
                "events": {"m.room.topic": 50},
            },
        },
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = r.body["room_id"]
    await join(api_a, carol, room_id, a)
    await join(api_b, bob, room_id, a)
    await set_topic(api_a, alice, room_id, "alice's topic")
    await settle(a, b)
    since = (await timeline_sync(api_b, bob))["next_batch"]

    # Carol's message and topic, made while she is still joined (as A sees it) ...
    msg, topic = await build_on_current(
        a, room_id, carol.user_id, "m.room.topic", {"topic": "carol's topic"}
    )
    msg_id, topic_id = msg.event_id, topic.event_id

    # ... reach B only after bob has banned her there.
    r = await api_b.post(
        f"/rooms/{q(room_id)}/ban", {"user_id": carol.user_id}, token=bob.access_token
    )
    assert r.status == 200, r.body
    answer = await send_txn(a, b, [msg.pdu, topic.pdu])
    assert answer["pdus"] == {msg_id: {}, topic_id: {}}  # accepted, not rejected

    store_b = b.hs.rooms_area.rooms.events
    for event_id in (msg_id, topic_id):
        stored = await store_b.by_id(event_id)
        assert stored is not None, event_id
        assert stored.soft_failed and stored.rejected_reason is None and not stored.outlier
        assert stored.stream_ordering is None
    # The topic stays alice's; the soft-failed events are no forward extremities.
    assert (await state_content(api_b, bob, room_id, "m.room.topic")) == {"topic": "alice's topic"}
    room_b = await b.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room_b is not None
    ext = {s.event.event_id for s in await store_b.extremities(room_b.room_nid)}
    assert not ext & {msg_id, topic_id}

    # A control message from alice arrives normally and is shown and pushed.
    control = await send_text(api_a, alice, room_id, "control")
    await settle(a, b)
    body = await timeline_sync(api_b, bob, since)
    ids = timeline_ids(body, room_id)
    assert control in ids
    assert msg_id not in ids and topic_id not in ids
    r = await api_b.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=100", token=bob.access_token)
    assert r.status == 200, r.body
    shown = {e["event_id"] for e in r.body["chunk"]}
    assert control in shown and not shown & {msg_id, topic_id}
    r = await api_b.get(f"/rooms/{q(room_id)}/event/{q(msg_id)}", token=bob.access_token)
    assert r.status == 404, r.body
    r = await api_b.get("/notifications", token=bob.access_token)
    assert r.status == 200, r.body
    notified = [n["event"]["event_id"] for n in r.body["notifications"]]
    assert control in notified and msg_id not in notified and topic_id not in notified
    assert (await state_content(api_b, bob, room_id, "m.room.topic")) == {"topic": "alice's topic"}
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
