"""Partial-state joins, the joining side (issue 15 #7): two real Myelin servers.

Bob on B joins a room of many members on A. B asks send_join to omit the members,
answers /join at once and fetches the whole state in the background. The tests
hold that background resync back (``PartialStateJoins.start`` replaced on B's
instance, so nothing runs until the test lets it) to look at the room while it is
partial: Bob can send (to A, which B only knows from servers_in_room), A's members
whose memberships B has not got can send to Bob, a /joined_members read waits for
the resync, and after it every member is known, a member who left meanwhile stays
left. A restart during partial state resumes the resync; a resident that does not
omit the members, or the option off, gives a full join.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web

from federation.membership.partial_state import PartialStateJoins
from homeserver.app import RunningServer
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.storage.database import count_statements
from tests.conftest import RestartFn, ServerFactory
from tests.federation.fedutil import eventually
from tests.federation.partial_support import (
    PARTIAL_ON,
    hold_resync,
    partial_joins,
    release_resync,
    room_info,
)
from tests.federation.rooms_support import (
    name,
    q,
    register,
    send_text,
    settle,
    sync_rooms,
    timeline_bodies,
)
from tests.federation.scripted_peer import ScriptedPeer
from tests.federation.test_rooms_big_join import BigRoom
from tests.helpers import Api, User

MEMBERS = 12
# A /sync filter that lazy-loads members (as Element does).
LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}}})


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def _big_room(a: RunningServer) -> tuple[str, Api, User, list[User]]:
    """A named public room on A with MEMBERS members besides Alice (named: B gets no
    heroes' memberships, so it knows no member of A's before its resync)."""
    api, alice = await register(a, "alice")
    r = await api.post(
        "/createRoom", {"preset": "public_chat", "name": "big"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    members = []
    for i in range(MEMBERS):
        user = await api.register(f"m{i}")
        r = await api.post(f"/rooms/{q(room_id)}/join", {}, token=user.access_token)
        assert r.status == 200, r.body
        members.append(user)
    return room_id, api, alice, members


async def _join_partially(
    a: RunningServer, b: RunningServer, room_id: str
) -> tuple[Api, User, list[RoomInfo]]:
    """Bob on B joins A's room with partial state, its resync held back (``held``)."""
    api_b, bob = await register(b, "bob")
    held = hold_resync(b)
    r = await api_b.post(f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert await partial_joins(b).is_partial((await room_info(b, room_id)).room_nid)
    return api_b, bob, held


def _hold_merge(partial: PartialStateJoins) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the partial-state merge back: the first event is set when it is reached,
    and it goes on once the second is set."""
    gate = asyncio.Event()
    merging = asyncio.Event()
    merge = partial._merge

    async def gated_merge(*args: Any) -> None:
        merging.set()
        await gate.wait()
        await merge(*args)

    partial._merge = gated_merge  # type: ignore[method-assign,assignment]
    return merging, gate


def _gate_round(partial: PartialStateJoins) -> tuple[asyncio.Event, asyncio.Event]:
    """Hold the resync round back before it asks for the state: the first event is set
    when it is reached, and it goes on once the second is set."""
    gate = asyncio.Event()
    entered = asyncio.Event()
    fetch = partial._fetch

    async def gated_fetch(server: str, room: RoomInfo, join_id: str) -> Any:
        entered.set()
        await gate.wait()
        return await fetch(server, room, join_id)

    partial._fetch = gated_fetch  # type: ignore[method-assign]
    return entered, gate


async def _joined(api: Api, user: User, room_id: str) -> set[str]:
    r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
    assert r.status == 200, r.body
    return set(r.body["joined"])


async def _typing(api: Api, user: User, room_id: str) -> list[str]:
    rooms = await sync_rooms(api, user)
    events = rooms.get("join", {}).get(room_id, {}).get("ephemeral", {}).get("events", [])
    return [u for e in events if e["type"] == "m.typing" for u in e["content"]["user_ids"]]


async def test_partial_join_sends_receives_and_completes(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)
    assert [h.room_id for h in held] == [room_id]
    # Only Bob's membership is here: none of A's members were sent.
    known = await partial_joins(b).rooms.members.members(room.room_nid, ("join",))
    assert [m.user_id for m in known] == [bob.user_id]
    waiting = asyncio.create_task(_joined(api_b, bob, room_id))

    # Bob sends at once; B sends it to A, which it knows from servers_in_room.
    sent = await send_text(api_b, bob, room_id, "hello from bob")
    await settle(a, b)
    # B cannot vouch for the room's state yet: other servers are sent elsewhere.
    state = await peer.request(
        name(b),
        "GET",
        f"/_matrix/federation/v1/state/{q(room_id)}",
        query={"event_id": sent},
    )
    assert state.status == 404 and "whole state" in state.body["error"], state.body
    made = await peer.request(
        name(b), "GET", f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(peer.user('eve'))}"
    )
    assert made.status == 404 and "whole state" in made.body["error"], made.body
    assert "hello from bob" in await timeline_bodies(api_a, alice, room_id)
    # A's members, whose memberships B has not got, reach Bob; one leaves meanwhile.
    await send_text(api_a, members[3], room_id, "from m3")
    r = await api_a.post(f"/rooms/{q(room_id)}/leave", {}, token=members[7].access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    assert await timeline_bodies(api_b, bob, room_id) == ["hello from bob", "from m3"]
    # A sync that lazy-loads members sees the room at once (one that does not: see
    # tests/federation/test_partial_state_sync.py).
    r = await api_b.get(f"/sync?timeout=0&filter={q(LAZY)}", token=bob.access_token)
    assert r.status == 200, r.body
    rooms = r.body["rooms"]
    bodies = [
        e["content"].get("body")
        for e in rooms["join"][room_id]["timeline"]["events"]
        if e["type"] == "m.room.message"
    ]
    assert bodies == ["hello from bob", "from m3"]
    # Typing goes to A too (servers_in_room), though B knows no member of A's yet.
    r = await api_b.put(
        f"/rooms/{q(room_id)}/typing/{q(bob.user_id)}",
        {"typing": True, "timeout": 30000},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    typing = await eventually(
        lambda: _typing(api_a, alice, room_id), lambda t: bob.user_id in t, 30.0
    )
    assert bob.user_id in typing
    assert not waiting.done()  # /joined_members waits for the whole state

    release_resync(b, held)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members} - {members[7].user_id}
    assert await waiting == expected
    assert not await partial_joins(b).is_partial(room.room_nid)
    r = await api_b.get(f"/rooms/{q(room_id)}/members", token=bob.access_token)
    assert r.status == 200, r.body
    got = {e["state_key"]: e["content"]["membership"] for e in r.body["chunk"]}
    assert got[members[7].user_id] == "leave"
    assert {u for u, m in got.items() if m == "join"} == expected
    # After the resync the room goes on as any other.
    await send_text(api_a, members[5], room_id, "from m5")
    await settle(a, b)
    assert (await timeline_bodies(api_b, bob, room_id))[-1] == "from m5"
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_restart_during_partial_state_resumes(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, _ = await _join_partially(a, b, room_id)
    await api_b.__aexit__(None, None, None)

    b = await restart_server(b)
    room = await room_info(b, room_id)
    assert await partial_joins(b).wait_full(room, 60.0)
    api_b = Api(b.client_url)
    await api_b.__aenter__()
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}
    assert await _joined(api_b, bob, room_id) == expected
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_members_merged_later_are_in_device_lists_changed(
    make_server: ServerFactory,
) -> None:
    """Bob's /sync ran while the room was partial, so it named none of A's members as
    new room mates; once the merge adds them, his next /sync must list them in
    ``device_lists.changed``, or his client never asks for their keys and encrypts
    for nobody there (nio: "never saw alice's device keys")."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    r = await api_b.get("/sync?timeout=0", token=bob.access_token)
    assert r.status == 200, r.body
    assert alice.user_id not in r.body.get("device_lists", {}).get("changed", [])
    since = r.body["next_batch"]
    release_resync(b, held)
    assert await partial_joins(b).wait_full(await room_info(b, room_id), 60.0)
    r = await api_b.get(f"/sync?timeout=0&since={q(since)}", token=bob.access_token)
    assert r.status == 200, r.body
    changed = set(r.body.get("device_lists", {}).get("changed", []))
    assert {alice.user_id} | {m.user_id for m in members} <= changed
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_merged_members_device_list_changes_cost_statements_per_merge_not_per_member(
    make_server: ServerFactory,
) -> None:
    """The merge's device-list hook records a change for every member it added with one
    position allocation and one insert for all (thousands in a big room: two
    statements each were most of the merge's tail, holding up the history read
    behind it), and the changes are there for the joiner's /sync."""
    from homeserver.storage.database import count_statements

    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    r = await api_b.get("/sync?timeout=0", token=bob.access_token)
    assert r.status == 200, r.body
    since = r.body["next_batch"]
    partial = partial_joins(b)
    counts: list[tuple[int, Any]] = []
    hooks = list(partial.merged_hooks)

    async def counted(joined: list[str]) -> None:
        with count_statements() as counter:
            for hook in hooks:
                await hook(joined)
        counts.append((len(joined), counter.by_sql))

    partial.merged_hooks[:] = [counted]
    release_resync(b, held)
    assert await partial.wait_full(await room_info(b, room_id), 60.0)
    ((added, by_sql),) = counts
    assert added >= MEMBERS + 1
    inserts = {sql: n for sql, n in by_sql.items() if "INTO e2e_device_list_stream" in sql}
    allocations = {sql: n for sql, n in by_sql.items() if "UPDATE e2e_stream_heads" in sql}
    assert list(inserts.values()) == [1], by_sql
    assert list(allocations.values()) == [1], by_sql
    r = await api_b.get(f"/sync?timeout=0&since={q(since)}", token=bob.access_token)
    assert r.status == 200, r.body
    changed = set(r.body.get("device_lists", {}).get("changed", []))
    assert {alice.user_id} | {m.user_id for m in members} <= changed
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def _join_big_peer_room(
    hs: RunningServer, peer: ScriptedPeer
) -> tuple[str, list[dict[str, str]], Api, User]:
    """Bob joins a scripted peer's room that answers send_join in full whatever is
    asked; the queries its send_join got."""
    api, bob = await register(hs, "bob")
    big = BigRoom(peer, bob.user_id, members=20)
    queries: list[dict[str, str]] = []

    async def send_join(request: web.Request, params: dict[str, str], body: Any) -> Any:
        queries.append(dict(request.query))
        return await big.send_join(request, params, body)

    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", big.make_join)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", send_join)
    room_id = big.room.room_id
    r = await api.post(
        f"/join/{q(room_id)}?server_name={quote(peer.server_name)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    return room_id, queries, api, bob


async def test_a_resident_that_does_not_omit_gives_a_full_join(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, queries, api, bob = await _join_big_peer_room(hs, peer)
    assert queries == [{"omit_members": "true"}]
    room = await room_info(hs, room_id)
    assert not await partial_joins(hs).is_partial(room.room_nid)
    assert len(await _joined(api, bob, room_id)) == 20 + 2
    await api.__aexit__(None, None, None)


async def test_option_off_asks_for_the_whole_state(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs = await make_server(federated=True, federation={"partial_state_joins": False})
    room_id, queries, api, bob = await _join_big_peer_room(hs, peer)
    assert queries == [{}]
    assert len(await _joined(api, bob, room_id)) == 20 + 2
    await api.__aexit__(None, None, None)


async def test_members_omitted_without_servers_in_room_still_resyncs(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    """A resident that omits the members but names no servers_in_room (the spec requires
    it): the room is still partial, and the server joined through is asked for the rest.
    The room is invite-only: Bob's invite, an auth event of his join, stands in for the
    omitted membership when the join is checked."""
    hs = await make_server(federated=True, federation=PARTIAL_ON)
    api, bob = await register(hs, "bob")
    big = BigRoom(peer, bob.user_id, members=30)
    asked: list[str] = []

    async def send_join(request: web.Request, params: dict[str, str], body: Any) -> Any:
        assert request.query.get("omit_members") == "true"
        return web.json_response(
            {
                "origin": peer.server_name,
                "event": body,
                "state": [e.pdu for e in big.state if e.type != "m.room.member"],
                "auth_chain": [e.pdu for e in big.all],
                "members_omitted": True,
            }
        )

    async def state(request: web.Request, params: dict[str, str], body: Any) -> Any:
        asked.append(request.query.get("event_id", ""))
        return web.json_response(
            {"pdus": [e.pdu for e in big.state], "auth_chain": [e.pdu for e in big.all]}
        )

    peer.route("GET", "/_matrix/federation/v1/make_join/{roomId}/{userId}", big.make_join)
    peer.route("PUT", "/_matrix/federation/v2/send_join/{roomId}/{eventId}", send_join)
    peer.route("GET", "/_matrix/federation/v1/state/{roomId}", state)
    room_id = big.room.room_id
    held = hold_resync(hs)
    r = await api.post(
        f"/join/{q(room_id)}?server_name={quote(peer.server_name)}", {}, token=bob.access_token
    )
    assert r.status == 200, r.body
    room = await room_info(hs, room_id)
    assert await partial_joins(hs).is_partial(room.room_nid)
    r = await api.get(f"/rooms/{q(room_id)}/state/m.room.join_rules/", token=bob.access_token)
    assert r.body == {"join_rule": "invite"}
    release_resync(hs, held)
    assert await partial_joins(hs).wait_full(room, 60.0)
    assert len(asked) == 1 and asked[0].startswith("$")
    assert len(await _joined(api, bob, room_id)) == 30 + 2
    await api.__aexit__(None, None, None)


async def test_history_read_waits_for_the_resync_round_under_way(
    make_server: ServerFactory,
) -> None:
    """Paging back over the history from before a partial-state join while the resync
    is fetching the state waits for that round (the state at the history is mostly the
    member events it is fetching) instead of fetching and checking them a second time;
    then it reads A's messages. (With no round under way the read does not wait:
    ``test_partial_join_sends_receives_and_completes`` reads while the resync is held.)"""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    await send_text(api_a, members[0], room_id, "before the join")
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)

    partial = partial_joins(b)
    entered, gate = _gate_round(partial)
    release_resync(b, held)
    await asyncio.wait_for(entered.wait(), 30.0)
    reading = asyncio.create_task(timeline_bodies(api_b, bob, room_id))
    await send_text(api_a, members[1], room_id, "during the resync")
    await settle(a, b)
    assert not reading.done()  # waiting for the round under way
    gate.set()
    bodies = await asyncio.wait_for(reading, 30.0)
    assert bodies[0] == "before the join", bodies
    # The merge comes after the read (``history_first``), then completes the room.
    assert await partial.wait_full(room, 30.0)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_history_read_asks_for_the_history_while_the_round_goes_on(
    make_server: ServerFactory,
) -> None:
    """The backfill's own ``/backfill`` request, the checks of its answer and the
    ``/state_ids`` request at its gap need nothing the resync round is fetching: they
    are made while the round goes on, and only what needs the round's events (the
    history's auth events, the events of the state at its gap) waits."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    # More history than one backfill brings (50 events): it ends at a gap, whose
    # state is asked for (/state_ids).
    for i in range(45):
        await send_text(api_a, members[i % MEMBERS], room_id, f"before the join {i}")
    api_b, bob, held = await _join_partially(a, b, room_id)

    partial = partial_joins(b)
    entered, gate = _gate_round(partial)
    fed_a = a.hs.federation
    assert fed_a is not None and fed_a.rooms is not None
    reads = fed_a.rooms.reads
    backfill = reads.backfill
    asked = asyncio.Event()

    async def seen_backfill(*args: Any) -> Any:
        asked.set()
        return await backfill(*args)

    reads.backfill = seen_backfill  # type: ignore[method-assign,assignment]
    state = reads.state
    asked_ids = asyncio.Event()

    async def seen_state(origin: str, room_id: str, event_id: str, ids_only: bool) -> Any:
        if ids_only:
            asked_ids.set()
        return await state(origin, room_id, event_id, ids_only=ids_only)

    reads.state = seen_state  # type: ignore[method-assign]
    release_resync(b, held)
    await asyncio.wait_for(entered.wait(), 30.0)
    reading = asyncio.create_task(
        api_b.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=10", token=bob.access_token)
    )
    # Asked while the round is held back (it would wait 20 s for the round if the
    # request came after the wait).
    await asyncio.wait_for(asked.wait(), 10.0)
    await asyncio.wait_for(asked_ids.wait(), 10.0)
    assert not reading.done()
    gate.set()
    r = await asyncio.wait_for(reading, 30.0)
    assert r.status == 200, r.body
    bodies = [e["content"].get("body") for e in r.body["chunk"] if e["type"] == "m.room.message"]
    assert bodies[0] == "before the join 44", bodies
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_history_read_waits_for_the_state_events_not_for_the_merge(
    make_server: ServerFactory,
) -> None:
    """The read waits for the round to have stored the state's events, not for the
    merge into the room's state after it (``wait_round``): with the merge held back,
    the history from before the join is read while the room is still partial."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    await send_text(api_a, members[0], room_id, "before the join")
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)

    partial = partial_joins(b)
    merging, gate = _hold_merge(partial)
    release_resync(b, held)
    await asyncio.wait_for(merging.wait(), 30.0)
    # Well under the backfill's wait for a round (20 s): it does not wait for the merge.
    bodies = await asyncio.wait_for(timeline_bodies(api_b, bob, room_id), 10.0)
    assert bodies[0] == "before the join", bodies
    assert await partial.is_partial(room.room_nid)
    gate.set()
    assert await partial.wait_full(room, 30.0)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_history_with_a_gap_is_stored_ahead_of_the_round(
    make_server: ServerFactory,
) -> None:
    """History that ends at a gap (more than one backfill brings) is read while the
    resync round is still fetching the state: it is stored on the part of the state at
    its gap that B holds (the room's non-member state, the senders' memberships, its
    own auth events), the rest named for the merge (one row). The merge then adds the
    gap's own members to that history's state (all who joined before it), never those
    of our join (a member who joined after the history is not in it)."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    for i in range(45):  # one sender: B holds the membership of no other member
        await send_text(api_a, members[0], room_id, f"before the join {i}")
    late = await api_a.register("late")
    r = await api_a.post(f"/rooms/{q(room_id)}/join", {}, token=late.access_token)
    assert r.status == 200, r.body
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)

    partial = partial_joins(b)
    entered, gate = _gate_round(partial)
    release_resync(b, held)
    await asyncio.wait_for(entered.wait(), 30.0)
    # The round is held back: the read does not wait for it (it would wait 20 s).
    r = await asyncio.wait_for(
        api_b.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=10", token=bob.access_token), 10.0
    )
    assert r.status == 200, r.body
    bodies = [e["content"].get("body") for e in r.body["chunk"] if e["type"] == "m.room.message"]
    assert bodies[0] == "before the join 44", bodies
    db = b.hs.db
    assert await db.fetchval("SELECT COUNT(*) FROM partial_state_history") == 1
    rooms = b.hs.rooms_area.rooms
    oldest = await db.fetchval(
        "SELECT event_id FROM events WHERE room_nid = $1 AND stream_ordering < 0"
        " ORDER BY depth LIMIT 1",
        room.room_nid,
    )
    stored = await rooms.events.by_id(str(oldest))
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    before_merge = await rooms.state_at(stored.state_group)
    assert ("m.room.history_visibility", "") in before_merge
    # A's state at that event: the members who had joined by then.
    on_a = await a.hs.rooms_area.rooms.events.by_id(str(oldest))
    assert on_a is not None
    at_a = await a.hs.rooms_area.rooms.state_at(on_a.state_group)
    then = {k[1] for k in at_a if k[0] == "m.room.member"}
    assert late.user_id not in then and len(then) > 3, then
    held_members = {k[1] for k in before_merge if k[0] == "m.room.member"}
    assert {alice.user_id, members[0].user_id} <= held_members < then, held_members
    gate.set()
    assert await partial.wait_full(room, 30.0)
    assert await db.fetchval("SELECT COUNT(*) FROM partial_state_history") == 0
    after_merge = await rooms.state_at(stored.state_group)
    assert {k[1] for k in after_merge if k[0] == "m.room.member"} == then
    assert {k: s.event.event_id for k, s in after_merge.items()} == {
        k: s.event.event_id for k, s in at_a.items()
    }
    assert late.user_id in await _joined(api_b, bob, room_id)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_a_gap_named_twice_keeps_the_events_named_first(make_server: ServerFactory) -> None:
    """A second read of the same history names its gap again with fewer events lacking
    (the round stored some meanwhile); the groups the first read stored still lack
    those, so the row keeps them for the merge."""
    b = await make_server(federated=True, federation=PARTIAL_ON)
    store = partial_joins(b).store
    await store.defer_history(7, "$gap", "a.example", ["$m1", "$m2", "$m3"])
    await store.defer_history(7, "$gap", "a.example", ["$m3", "$m4"])
    assert await store.deferred_history(7) == [("$gap", "a.example", ["$m1", "$m2", "$m3", "$m4"])]


async def test_the_round_gives_way_to_history_stored_ahead_of_it(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a backfill stores history ahead of the resync round, the round checks no
    further batch of its events (``ahead_of_round``): at 5,000 members those checks
    took the event loop from the read step after step (1 s of it)."""
    from federation.pdu import fetch

    monkeypatch.setattr(fetch, "CHECK_BATCH", 2)
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    for i in range(45):
        await send_text(api_a, members[0], room_id, f"before the join {i}")
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)
    partial = partial_joins(b)
    fed = b.hs.federation
    assert fed is not None and fed.rooms is not None
    backfiller = fed.rooms.backfiller
    steps: list[str] = []
    first = asyncio.Event()
    fetcher = partial.pipeline.fetcher
    batches, store_ahead = fetcher.batches, backfiller._store_ahead

    round_fetch = partial._fetch
    in_round = contextvars.ContextVar("in_round", default=False)

    async def marked_fetch(*args: Any) -> Any:
        in_round.set(True)
        return await round_fetch(*args)

    async def slow_batches(*args: Any) -> Any:
        async for batch in batches(*args):
            if in_round.get():  # the round's, not the backfill's own checks
                steps.append("checked")
                first.set()
                await asyncio.sleep(0.05)  # the round goes on well after the read starts
            yield batch

    partial._fetch = marked_fetch  # type: ignore[method-assign]

    async def seen_store_ahead(*args: Any) -> Any:
        steps.append("ahead")
        await asyncio.sleep(0.3)
        stored = await store_ahead(*args)
        steps.append("stored")
        return stored

    fetcher.batches = slow_batches  # type: ignore[method-assign,assignment]
    backfiller._store_ahead = seen_store_ahead  # type: ignore[method-assign]
    release_resync(b, held)
    await asyncio.wait_for(first.wait(), 30.0)
    r = await api_b.get(f"/rooms/{q(room_id)}/messages?dir=b&limit=10", token=bob.access_token)
    assert r.status == 200, r.body
    assert await partial.wait_full(room, 30.0)
    assert "ahead" in steps, steps
    start, end = steps.index("ahead"), steps.index("stored")
    # At most the batch being checked when the backfill began.
    assert steps[start:end].count("checked") <= 1, steps
    assert steps[end:].count("checked") >= 2, steps
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_resync_stores_each_chunk_while_the_next_is_checked(
    make_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The resync's state is checked and stored a chunk at a time, oldest first: the
    first chunk is stored (each event against its own auth events, which come before
    it) before the last one is checked, and the room is whole with every member after.
    Chunks of 4 here, so the 12 members' state makes several."""
    from federation.membership import partial_state
    from federation.pdu import fetch

    monkeypatch.setattr(partial_state, "STORE_CHUNK", 4)
    monkeypatch.setattr(fetch, "CHECK_BATCH", 4)
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    partial = partial_joins(b)
    steps: list[str] = []
    fetcher, auth = partial.pipeline.fetcher, partial.pipeline.auth
    batches, store_outliers = fetcher.batches, auth.store_outliers

    async def seen_batches(*args: Any) -> Any:
        async for batch in batches(*args):
            steps.append("checked")
            yield batch

    async def seen_store(room: RoomInfo, events: Any) -> Any:
        stored = await store_outliers(room, events)
        steps.append("stored")
        return stored

    fetcher.batches = seen_batches  # type: ignore[method-assign,assignment]
    auth.store_outliers = seen_store  # type: ignore[method-assign]
    release_resync(b, held)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}
    assert await _joined(api_b, bob, room_id) == expected
    assert steps.count("checked") >= 4 and steps.count("stored") >= 3, steps
    last_check = len(steps) - 1 - steps[::-1].index("checked")
    assert steps.index("stored") < last_check, steps
    rejected = await b.hs.db.fetchval(
        "SELECT COUNT(*) FROM events WHERE rejected_reason IS NOT NULL"
    )
    assert rejected == 0
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_resync_checks_each_signature_once(make_server: ServerFactory) -> None:
    """The resync's events are checked on receipt (format, hashes, signatures with the
    keys valid at their time); storing them as outliers then runs the auth rules only,
    without looking up a key or checking a signature again."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    auth = partial_joins(b).pipeline.auth
    keys = auth.keys
    looked_up: list[tuple[str, str]] = []

    async def counted(server: str, key_id: str) -> Any:
        looked_up.append((server, key_id))
        return await keys(server, key_id)

    auth.keys = counted
    release_resync(b, held)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}
    assert await _joined(api_b, bob, room_id) == expected
    assert looked_up == []
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_history_stored_before_the_merge_keeps_its_own_state(
    make_server: ServerFactory,
) -> None:
    """History read while the room is still partial is stored with the state at its
    gap (whole, from ``/state_ids``); the merge that completes the room's state after it
    adds our join's members to the partial state's groups only, never to the history's:
    a member who joined after a message is not in the state at that message."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    message = await send_text(api_a, members[0], room_id, "before the join")
    late = await api_a.register("late")
    r = await api_a.post(f"/rooms/{q(room_id)}/join", {}, token=late.access_token)
    assert r.status == 200, r.body
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)

    partial = partial_joins(b)
    merging, gate = _hold_merge(partial)
    release_resync(b, held)
    await asyncio.wait_for(merging.wait(), 30.0)
    bodies = await asyncio.wait_for(timeline_bodies(api_b, bob, room_id), 10.0)
    assert "before the join" in bodies, bodies
    gate.set()
    assert await partial.wait_full(room, 30.0)
    rooms = b.hs.rooms_area.rooms
    stored = await rooms.events.by_id(message)
    assert stored is not None and not stored.outlier
    at_message = await rooms.state_at(stored.state_group)
    assert ("m.room.member", members[0].user_id) in at_message
    assert ("m.room.member", late.user_id) not in at_message
    # The room's state now is whole: the late member is joined.
    assert late.user_id in await _joined(api_b, bob, room_id)
    # A sync that does not lazy-load members gets the room as newly joined, every member
    # in its state or timeline: its timeline is the newest events of the stream, never
    # the history backfilled meanwhile (negative positions, oldest last), whose state
    # before it would lack the members who joined after it.
    body = (await sync_rooms(api_b, bob))["join"][room_id]
    events = body["state"]["events"] + body["timeline"]["events"]
    joined_in_sync = {
        e["state_key"]
        for e in events
        if e["type"] == "m.room.member" and e["content"].get("membership") == "join"
    }
    assert joined_in_sync == await _joined(api_b, bob, room_id)
    timeline_bodies_ = [e["content"].get("body") for e in body["timeline"]["events"]]
    assert "before the join" not in timeline_bodies_, timeline_bodies_
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_the_merge_lets_a_waiting_history_read_store_first(
    make_server: ServerFactory,
) -> None:
    """A backfill that waited for the round stores its history before the round's merge
    takes the room's lock (``history_first``): the read is not held behind the merge
    (0.2 s of the history read at 5,000 members), and the history's state is its own."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, _alice, members = await _big_room(a)
    await send_text(api_a, members[0], room_id, "before the join")
    api_b, bob, held = await _join_partially(a, b, room_id)
    room = await room_info(b, room_id)
    partial = partial_joins(b)
    fed = b.hs.federation
    assert fed is not None and fed.rooms is not None
    backfiller = fed.rooms.backfiller
    round_wait = backfiller.resync_wait
    assert round_wait is not None
    entered = asyncio.Event()
    partial_after: list[bool] = []

    async def slow_after_the_round(room: Any, timeout_s: float) -> None:
        entered.set()
        await round_wait(room, timeout_s)
        # The merge is free to start now; without ``history_first`` it would be done
        # by the time this backfill goes on to take the room's lock.
        await asyncio.sleep(0.5)
        partial_after.append(await partial.is_partial(room.room_nid))

    backfiller.resync_wait = slow_after_the_round
    reading = asyncio.create_task(timeline_bodies(api_b, bob, room_id))
    await asyncio.wait_for(entered.wait(), 10.0)
    release_resync(b, held)
    bodies = await asyncio.wait_for(reading, 30.0)
    assert bodies[0] == "before the join", bodies
    assert partial_after == [True]
    assert await partial.wait_full(room, 30.0)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_a_first_partial_join_commits_twice_its_marker_with_the_join(
    make_server: ServerFactory,
) -> None:
    """B's writes for a partial join of a room it has never seen: the room's row with
    the state and auth chain (one transaction), then the join with the partial-state
    marker (one transaction: both or neither). It was four commits: the row and the
    create event, the other outliers, the marker, the join."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, _members = await _big_room(a)
    db = b.hs.rooms_area.rooms.persister.db
    transaction = db.transaction
    written: list[set[str]] = []  # per transaction: the tables of the join it wrote
    tables = ("rooms", "events", "partial_state_rooms")

    @contextlib.asynccontextmanager
    async def recorded() -> AsyncIterator[Any]:
        with count_statements() as counter:
            async with transaction() as q_:
                yield q_
        into = {t for t in tables for sql in counter.by_sql if sql.startswith(f"INSERT INTO {t} ")}
        if into:
            written.append(into)

    db.transaction = recorded  # type: ignore[method-assign]
    try:
        api_b, bob, held = await _join_partially(a, b, room_id)
    finally:
        db.transaction = transaction  # type: ignore[method-assign]
    assert written == [{"rooms", "events"}, {"events", "partial_state_rooms"}], written
    room = await room_info(b, room_id)
    marker = await partial_joins(b).store.get(room.room_nid)
    assert marker is not None and marker.joined_via == name(a)
    join = await b.hs.rooms_area.rooms.events.by_id(marker.join_event_id)
    assert join is not None and join.event.sender == bob.user_id and not join.outlier
    release_resync(b, held)
    assert await _joined(api_b, bob, room_id) >= {bob.user_id, alice.user_id}
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_a_read_while_a_marker_is_written_does_not_remember_the_room_complete(
    make_server: ServerFactory,
) -> None:
    """The marker is written in the join's transaction: a read of the room before that
    commits finds no marker, and must not remember the room as complete (every later
    read would then miss the marker)."""
    b = await make_server(federated=True, federation=PARTIAL_ON)
    api, alice = await register(b, "alice")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room = await room_info(b, str(r.body["room_id"]))
    store = partial_joins(b).store
    db = b.hs.rooms_area.rooms.persister.db
    store.marking(room.room_nid)
    try:
        assert not await store.is_partial(room.room_nid)  # not committed yet
        async with db.transaction() as q_:
            await store.mark_in(q_, room.room_nid, "$join", "a.example", ["a.example"], 1)
        assert await store.is_partial(room.room_nid)
    finally:
        store.marked(room.room_nid)
    assert await store.is_partial(room.room_nid)
    await store.clear(room.room_nid)
    assert not await store.is_partial(room.room_nid)
    await api.__aexit__(None, None, None)


async def test_the_resync_keeps_the_strings_its_events_repeat_once(
    make_server: ServerFactory,
) -> None:
    """The members fetched by the resync stay in memory (the events cache): the strings
    they all repeat (the room id, the type, the auth events cited, the membership) are
    one object each, not one per event (``share_repeats``); the events are as sent."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    release_resync(b, held)
    assert alice.user_id in await _joined(api_b, bob, room_id)
    room = await room_info(b, room_id)
    got = await b.hs.rooms_area.rooms.members.members(room.room_nid, ("join",))
    mine = {m.user_id: m.event_nid for m in got}
    stored = await b.hs.rooms_area.rooms.events.by_nids(mine[m.user_id] for m in members)
    pdus = [s.event.pdu for s in stored.values()]
    assert len(pdus) == MEMBERS
    for field in ("room_id", "type"):
        assert len({id(p[field]) for p in pdus}) == 1, field
    assert len({id(p["content"]["membership"]) for p in pdus}) == 1
    cited = {a for p in pdus for a in p["auth_events"]}
    assert len({id(a) for p in pdus for a in p["auth_events"]}) == len(cited)
    assert all(p["state_key"] is p["sender"] for p in pdus)
    on_a = await a.hs.rooms_area.rooms.events.by_ids(s.event.event_id for s in stored.values())
    assert {i: s.event.pdu for i, s in on_a.items()} == {
        s.event.event_id: s.event.pdu for s in stored.values()
    }
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
