"""Outliers (a join's state and auth chain, a partial-state resync's members) are
checked in memory and written in one transaction per batch, not one per event
(``AuthFetcher.store_outliers_locked``): a big room's state is thousands of them.

Checked here: the verdicts are those of checking each event alone against its own
auth events, an auth event of the same batch counting as known (and as rejected
when it is), and the whole batch costs one transaction.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

from homeserver.app import RunningServer
from homeserver.events.builder import build_event
from homeserver.events.model import Event
from homeserver.rooms.auth import auth_types_for_event
from homeserver.rooms.store.rooms_store import RoomInfo
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register


def _builder(
    hs: RunningServer, room: RoomInfo, state: dict[tuple[str, str], str], depth: int
) -> Callable[..., Event]:
    """Events of the room signed by ``hs``, citing the auth events the rules name
    (from ``state``, overridden by ``cite``), not stored anywhere."""
    version = room.version

    def build(
        ev_type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
        cite: dict[tuple[str, str], str] | None = None,
    ) -> Event:
        nonlocal depth
        depth += 1
        keys = auth_types_for_event(ev_type, state_key, sender, content, version)
        wanted = {**state, **(cite or {})}
        fields: dict[str, Any] = {
            "room_id": room.room_id,
            "type": ev_type,
            "sender": sender,
            "content": content,
            "prev_events": [],
            "auth_events": [wanted[k] for k in keys if k in wanted],
            "depth": depth,
            "origin_server_ts": hs.hs.clock.now_ms(),
        }
        if state_key is not None:
            fields["state_key"] = state_key
        return build_event(version, fields, name(hs), hs.hs.signing_key)

    return build


async def test_a_batch_of_outliers_is_judged_alone_and_written_in_one_transaction(
    make_server: ServerFactory,
) -> None:
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    r = await api.post(
        "/createRoom",
        {"preset": "public_chat", "power_level_content_override": {"events_default": 50}},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    rooms = hs.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    r = await api.get(f"/rooms/{q(room_id)}/state", token=alice.access_token)
    state = {(e["type"], e["state_key"]): e["event_id"] for e in r.body}
    depth = max(s.event.depth for s in await rooms.events.extremities(room.room_nid))

    build = _builder(hs, room, state, depth)
    carol = f"@carol:{name(hs)}"
    join = build("m.room.member", carol, {"membership": "join"}, carol)
    mine = {("m.room.member", carol): join.event_id}
    # Carol's power level (0) is under events_default (50): only a PL change she may
    # not make would let her speak; citing it gets her message rejected with it.
    pl = build(
        "m.room.power_levels",
        carol,
        {"users": {alice.user_id: 100}, "events_default": 0},
        "",
        cite=mine,
    )
    speaks = build(
        "m.room.message",
        carol,
        {"msgtype": "m.text", "body": "on a rejected PL"},
        cite={**mine, ("m.room.power_levels", ""): pl.event_id},
    )
    topic_pl = {**mine, ("m.room.power_levels", ""): state[("m.room.power_levels", "")]}
    named = build("m.room.name", carol, {"name": "x"}, "", cite=topic_pl)
    dangling = build("m.room.topic", carol, {"topic": "t"}, "", cite=mine)
    dangling.pdu["auth_events"] = [*dangling.auth_event_ids, "$not-anywhere"]
    dangling = Event(dangling.event_id, dangling.pdu, dangling.room_version)

    db = rooms.persister.db
    transaction = db.transaction
    opened = 0
    # Only this task's transactions (and its children's): the server's background
    # tasks write meanwhile.
    storing: ContextVar[bool] = ContextVar("storing", default=False)

    @asynccontextmanager
    async def counted() -> AsyncIterator[Any]:
        nonlocal opened
        opened += storing.get()
        async with transaction() as q_:
            yield q_

    db.transaction = counted  # type: ignore[method-assign]
    storing.set(True)
    try:
        fed = hs.hs.federation
        assert fed is not None and fed.rooms is not None
        auth = fed.rooms.pipeline.auth
        stored = await auth.store_outliers(room, [speaks, dangling, named, pl, join])
    finally:
        db.transaction = transaction  # type: ignore[method-assign]
    verdicts = {s.event.event_id: s.rejected_reason for s in stored}
    assert set(verdicts) == {e.event_id for e in (join, pl, speaks, named, dangling)}
    assert all(s.outlier for s in stored)
    # The join's auth events are the room's: accepted, and it stands for Carol's
    # membership to the events of the batch that cite it.
    assert verdicts[join.event_id] is None
    assert verdicts[pl.event_id] is not None  # Carol may not change the power levels
    assert verdicts[speaks.event_id] is not None  # cites the rejected PL
    assert verdicts[named.event_id] is not None  # 0 < the name's 50
    assert verdicts[dangling.event_id] == "missing auth events"
    assert opened == 1
    await api.__aexit__(None, None, None)


async def _store_members(hs: RunningServer, api: Any, alice: Any, count: int, tag: str) -> Any:
    """``count`` member events of a fresh room stored as outliers, counted."""
    from homeserver.storage.database import count_statements

    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    rooms = hs.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    r = await api.get(f"/rooms/{q(room_id)}/state", token=alice.access_token)
    state = {(e["type"], e["state_key"]): e["event_id"] for e in r.body}
    depth = max(s.event.depth for s in await rooms.events.extremities(room.room_nid))
    build = _builder(hs, room, state, depth)
    extremity = state[("m.room.member", alice.user_id)]
    joins = []
    for i in range(count):
        user = f"@{tag}{i}:{name(hs)}"
        ev = build("m.room.member", user, {"membership": "join"}, user)
        ev.pdu["prev_events"] = [extremity]  # an edge each, as a real state has
        joins.append(Event(ev.event_id, ev.pdu, ev.room_version))
    fed = hs.hs.federation
    assert fed is not None and fed.rooms is not None
    with count_statements() as counter:
        stored = await fed.rooms.pipeline.auth.store_outliers(room, joins)
    assert {s.event.event_id for s in stored} == {e.event_id for e in joins}
    assert all(s.outlier and s.rejected_reason is None for s in stored)
    got = await rooms.events.by_ids([e.event_id for e in joins])
    assert all(got[e.event_id].event.prev_event_ids == [extremity] for e in joins)
    nids = await rooms.rooms.key_nids(
        [("m.room.member", f"@{tag}{i}:{name(hs)}") for i in range(count)]
    )
    assert len(nids) == count
    return counter


async def test_a_batch_of_member_outliers_costs_statements_per_batch_not_per_event(
    make_server: ServerFactory,
) -> None:
    """A resync's thousands of member events: their rows, state keys, edges and the
    redactions waiting for them are written with one statement per table for the batch
    (``EventPersister._write_outliers``), so 60 cost what 6 cost."""
    hs = await make_server(federated=True)
    api, alice = await register(hs, "alice")
    few = await _store_members(hs, api, alice, 6, "few")
    many = await _store_members(hs, api, alice, 60, "many")
    assert many.total == few.total, (few.by_sql, many.by_sql)
    assert many.total <= 12, many.by_sql
    await api.__aexit__(None, None, None)
