"""State resolution over a stored room whose auth chain has 50,000 events (issue 9).

The chain used to be walked one level at a time into memory as full events and
cut at 20,000 events, silently. Now it is walked as ids in batched queries,
only the events the algorithm reads are loaded, and a hole in the graph is
named (``MissingEvents``), never skipped.

The room is built by direct inserts (outliers: the resolver reads the graph,
not the timeline): 12,500 users with five successive memberships each, each
citing the previous one, so the state's full auth chain holds the 4 x 12,500
earlier memberships plus the room's first events.
"""

from __future__ import annotations

from typing import Any

import pytest

from federation.pdu.graph import IdMap, RoomGraph
from federation.pdu.resolve import resolve
from homeserver.app import RunningServer
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.state_res import MissingEvents
from tests.federation.rooms_support import q, register

USERS = 12_500
MEMBERSHIPS = 5
BATCH = 2_500
V11 = KNOWN_ROOM_VERSIONS["11"]


def _member(
    room_id: str, user: str, k: int, base: list[str], ts: int
) -> tuple[str, dict[str, Any]]:
    prev = [f"$m{user}_{k - 1}"] if k else []
    pdu = {
        "room_id": room_id,
        "type": "m.room.member",
        "state_key": user,
        "sender": user,
        "content": {"membership": "join", "displayname": f"v{k}"},
        "auth_events": [*base, *prev],
        "prev_events": [],
        "depth": 10 + k,
        "origin_server_ts": ts,
    }
    return f"$m{user}_{k}", pdu


async def _insert(
    server: RunningServer, room_nid: int, events: list[tuple[str, dict[str, Any]]]
) -> None:
    db = server.hs.rooms_area.rooms.events.db
    sql = (
        "INSERT INTO events (event_id, room_nid, event_type, state_key, sender, depth,"
        " origin_server_ts, outlier, json) VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8)"
    )
    for start in range(0, len(events), BATCH):
        rows = [
            (
                event_id,
                room_nid,
                pdu["type"],
                pdu.get("state_key"),
                pdu["sender"],
                pdu["depth"],
                pdu["origin_server_ts"],
                encode_canonical_json(pdu).decode(),
            )
            for event_id, pdu in events[start : start + BATCH]
        ]
        async with db.transaction() as tx:
            await tx.executemany(sql, rows)


async def _room(server: RunningServer) -> tuple[str, int, IdMap, str]:
    api, alice = await register(server, "alice")
    r = await api.post(
        "/createRoom", {"preset": "public_chat", "room_version": "11"}, token=alice.access_token
    )
    room_id = r.body["room_id"]
    r = await api.get(f"/rooms/{q(room_id)}/state", token=alice.access_token)
    base = {(e["type"], e["state_key"]): e["event_id"] for e in r.body}
    await api.__aexit__(None, None, None)
    room = await server.hs.rooms_area.rooms.rooms.get_room(room_id)
    assert room is not None
    return room_id, room.room_nid, base, alice.user_id


async def test_a_50000_event_auth_chain_resolves_in_batches(server: RunningServer) -> None:
    room_id, room_nid, base, alice = await _room(server)
    auth_base = [base[("m.room.create", "")], base[("m.room.power_levels", "")]]
    auth_base.append(base[("m.room.join_rules", "")])
    name = server.hs.config.server_name
    events = [
        _member(room_id, f"@u{u}:{name}", k, auth_base, 1_000 + k)
        for u in range(USERS)
        for k in range(MEMBERSHIPS)
    ]
    alice_member = base[("m.room.member", alice)]
    topics = [
        (
            f"$topic{n}",
            {
                "room_id": room_id,
                "type": "m.room.topic",
                "state_key": "",
                "sender": alice,
                "content": {"topic": f"t{n}"},
                "auth_events": [*auth_base[:2], alice_member],
                "prev_events": [],
                "depth": 20,
                "origin_server_ts": 5_000 + n,
            },
        )
        for n in range(2)
    ]
    await _insert(server, room_nid, [*events, *topics])

    last = MEMBERSHIPS - 1
    current = {("m.room.member", f"@u{u}:{name}"): f"$m@u{u}:{name}_{last}" for u in range(USERS)}
    first = {**base, **current, ("m.room.topic", ""): "$topic0"}
    # The other branch: a later topic, and one user's previous membership.
    user0 = f"@u0:{name}"
    second = {
        **first,
        ("m.room.topic", ""): "$topic1",
        ("m.room.member", user0): f"$m{user0}_{last - 1}",
    }
    rooms = server.hs.rooms_area.rooms
    graph = RoomGraph(rooms)
    walked = await graph.auth_graph(first.values())
    assert len(walked.chain()) >= USERS * (MEMBERSHIPS - 1)
    assert not walked.missing

    cached_before = len(rooms.events._cache)
    resolved = await resolve(graph, V11, [first, second])
    # Only the events the steps read were loaded, not the chain's 50,000.
    assert len(rooms.events._cache) - cached_before < 1_000

    assert resolved[("m.room.topic", "")] == "$topic1"  # same mainline position: later wins
    assert resolved[("m.room.member", user0)] == f"$m{user0}_{last}"
    assert resolved == {**first, ("m.room.topic", ""): "$topic1"}
    # Arrival order of the state sets changes nothing.
    assert await resolve(graph, V11, [second, first]) == resolved


async def test_a_hole_in_the_stored_graph_is_named_not_skipped(server: RunningServer) -> None:
    room_id, room_nid, base, alice = await _room(server)
    auth_base = [base[("m.room.create", "")], base[("m.room.power_levels", "")]]
    cites_unknown = {
        "room_id": room_id,
        "type": "m.room.topic",
        "state_key": "",
        "sender": alice,
        "content": {"topic": "x"},
        "auth_events": [*auth_base, base[("m.room.member", alice)], "$never_stored"],
        "prev_events": [],
        "depth": 20,
        "origin_server_ts": 5_000,
    }
    fine = {**cites_unknown, "auth_events": cites_unknown["auth_events"][:3], "content": {}}
    await _insert(server, room_nid, [("$holey", cites_unknown), ("$fine", fine)])
    graph = RoomGraph(server.hs.rooms_area.rooms)
    with pytest.raises(MissingEvents) as raised:
        await resolve(
            graph,
            V11,
            [{**base, ("m.room.topic", ""): "$holey"}, {**base, ("m.room.topic", ""): "$fine"}],
        )
    assert raised.value.event_ids == {"$never_stored"}


async def test_an_unstored_event_citing_events_outside_the_sets_resolves(
    server: RunningServer,
) -> None:
    """The event being persisted (``extra``) may cite auth events no state set
    holds: their chains are walked too."""
    room_id, room_nid, base, alice = await _room(server)
    auth_base = [base[("m.room.create", "")], base[("m.room.power_levels", "")]]
    name = server.hs.config.server_name
    lonely_id, lonely = _member(room_id, f"@lonely:{name}", 0, auth_base, 900)
    old_topic = {
        "room_id": room_id,
        "type": "m.room.topic",
        "state_key": "",
        "sender": alice,
        "content": {"topic": "old"},
        "auth_events": [*auth_base, base[("m.room.member", alice)]],
        "prev_events": [],
        "depth": 20,
        "origin_server_ts": 5_000,
    }
    await _insert(server, room_nid, [(lonely_id, lonely), ("$old_topic", old_topic)])
    new_topic = {
        **old_topic,
        "content": {"topic": "new"},
        "auth_events": [*old_topic["auth_events"], lonely_id],
        "origin_server_ts": 6_000,
    }
    extra = Event("$new_topic", new_topic, V11)
    graph = RoomGraph(server.hs.rooms_area.rooms)
    resolved = await resolve(
        graph,
        V11,
        [
            {**base, ("m.room.topic", ""): "$old_topic"},
            {**base, ("m.room.topic", ""): "$new_topic"},
        ],
        {"$new_topic": extra},
    )
    # The lonely join is in the auth difference, so it takes part (and passes).
    assert resolved == {
        **base,
        ("m.room.topic", ""): "$new_topic",
        ("m.room.member", f"@lonely:{name}"): lonely_id,
    }
