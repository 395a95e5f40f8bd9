"""Partial-state rooms in /sync (issue 15 #7): two real Myelin servers.

A client that does not lazy-load members (matrix-nio) takes a room's members from
/sync's state. A room joined with partial state lacks most of them, and the resync
fills them in place, so no later sync would carry them: such a client would never
encrypt for them. So a sync that does not lazy-load members leaves a partial room
out (initial and incremental) until its state is whole, then sends it as newly
joined with the whole state; a long-poll waiting meanwhile is woken for it. A
lazy-loading sync sees the room at once. ``/keys/changes`` and
``device_lists.changed`` name the members the room brought.

Bob on B joins A's room with the resync held back (as in test_partial_state_join).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually
from tests.federation.partial_support import (
    PARTIAL_ON,
    hold_resync,
    partial_joins,
    release_resync,
    room_info,
)
from tests.federation.rooms_support import name, q, register, send_text, settle
from tests.federation.test_partial_state_join import LAZY, _big_room, _join_partially
from tests.helpers import Api, User

# An initial sync that also lists the rooms the user left (spec: include_leave).
INCLUDE_LEAVE = json.dumps({"room": {"include_leave": True}})


async def _sync(api: Api, user: User, since: str | None = None, **query: str) -> dict[str, Any]:
    params = {"timeout": "0", **query}
    if since is not None:
        params["since"] = since
    path = "/sync?" + "&".join(f"{k}={q(v)}" for k, v in params.items())
    r = await api.get(path, token=user.access_token)
    assert r.status == 200, r.body
    return dict(r.body)


def _members(body: dict[str, Any], room_id: str, where: str = "state") -> dict[str, str]:
    """user id -> membership, from the room's ``state`` (or ``timeline``) in a sync."""
    events = body["rooms"]["join"][room_id][where]["events"]
    return {
        e["state_key"]: e["content"]["membership"] for e in events if e["type"] == "m.room.member"
    }


async def test_non_lazy_sync_gets_a_partial_room_once_whole(make_server: ServerFactory) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}

    # While partial: a non-lazy sync (initial, then incremental with news in the room)
    # leaves the room out; a lazy one has it at once.
    first = await _sync(api_b, bob)
    assert room_id not in first["rooms"]["join"]
    lazy = await _sync(api_b, bob, filter=LAZY)
    assert room_id in lazy["rooms"]["join"]
    await send_text(api_a, members[0], room_id, "while partial")
    await settle(a, b)
    later = await _sync(api_b, bob, first["next_batch"])
    assert room_id not in later["rooms"]["join"]
    since = later["next_batch"]
    lazy_since = (await _sync(api_b, bob, filter=LAZY))["next_batch"]

    # A non-lazy long-poll waiting when the resync ends is woken with the room.
    polling = asyncio.create_task(_sync(api_b, bob, since, timeout="30000"))
    await asyncio.sleep(0.2)
    assert not polling.done()
    release_resync(b, held)
    woken = await asyncio.wait_for(polling, 60.0)
    assert await partial_joins(b).wait_full(await room_info(b, room_id), 60.0)
    # Sent as newly joined: every member in its state, history in a limited timeline.
    assert room_id in woken["rooms"]["join"], woken["rooms"]
    body = woken["rooms"]["join"][room_id]
    got = {**_members(woken, room_id), **_members(woken, room_id, "timeline")}
    assert {u for u, m in got.items() if m == "join"} == expected
    assert body["timeline"]["limited"] is True
    # Its members are device-list news, in the sync and in /keys/changes.
    changed = set(woken["device_lists"]["changed"])
    assert expected - {bob.user_id} <= changed
    r = await api_b.get(
        f"/keys/changes?from={q(since)}&to={q(woken['next_batch'])}", token=bob.access_token
    )
    assert r.status == 200, r.body
    assert expected - {bob.user_id} <= set(r.body["changed"])

    # Later syncs go on as for any room: not sent again without news.
    after = await _sync(api_b, bob, woken["next_batch"])
    assert room_id not in after["rooms"]["join"]
    # A lazy-loading client had the room all along: not sent again as new.
    lazy_after = await _sync(api_b, bob, lazy_since, filter=LAZY)
    assert room_id not in lazy_after["rooms"]["join"]
    # An initial non-lazy sync now has it, whole.
    initial = await _sync(api_b, bob)
    got = {**_members(initial, room_id), **_members(initial, room_id, "timeline")}
    assert {u for u, m in got.items() if m == "join"} == expected
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_incremental_sync_from_before_the_join_gets_the_room_whole(
    make_server: ServerFactory,
) -> None:
    """A token from before the join, used only after the resync: the room comes once,
    as newly joined, with its whole state (the join and the completion both in range)."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob = await register(b, "bob")
    before = (await _sync(api_b, bob))["next_batch"]
    held = hold_resync(b)
    r = await api_b.post(f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert (await _sync(api_b, bob, before))["rooms"]["join"] == {}
    release_resync(b, held)
    assert await partial_joins(b).wait_full(await room_info(b, room_id), 60.0)
    woken = await _sync(api_b, bob, before)
    got = {**_members(woken, room_id), **_members(woken, room_id, "timeline")}
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}
    assert {u for u, m in got.items() if m == "join"} == expected
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def _leave_while_partial(make_server: ServerFactory, kick: bool) -> None:
    """Bob's membership ends while the room is partial (he leaves, or Alice on A kicks
    him): a non-lazy client, which never had the room, gets no ``leave`` section for it,
    neither before nor after the resync; a lazy one, which had it, gets the leave."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, _members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    first = await _sync(api_b, bob)
    assert room_id not in first["rooms"]["join"]
    lazy_first = await _sync(api_b, bob, filter=LAZY)
    assert room_id in lazy_first["rooms"]["join"]

    if kick:
        r = await api_a.post(
            f"/rooms/{q(room_id)}/kick", {"user_id": bob.user_id}, token=alice.access_token
        )
    else:
        r = await api_b.post(f"/rooms/{q(room_id)}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)

    lazy = await eventually(
        lambda: _sync(api_b, bob, lazy_first["next_batch"], filter=LAZY),
        lambda body: room_id in body["rooms"]["leave"],
    )
    assert room_id in lazy["rooms"]["leave"], lazy["rooms"]
    later = await _sync(api_b, bob, first["next_batch"])
    assert room_id not in later["rooms"]["leave"], later["rooms"]
    assert room_id not in later["rooms"]["join"]
    # An initial sync asking for left rooms does not name it either.
    with_left = await _sync(api_b, bob, filter=INCLUDE_LEAVE)
    assert room_id not in with_left["rooms"]["leave"], with_left["rooms"]

    # Once whole, still not: the leave came while the room was partial.
    release_resync(b, held)
    assert await partial_joins(b).wait_full(await room_info(b, room_id), 60.0)
    after = await _sync(api_b, bob, first["next_batch"])
    assert room_id not in after["rooms"]["leave"] and room_id not in after["rooms"]["join"]
    with_left = await _sync(api_b, bob, filter=INCLUDE_LEAVE)
    assert room_id not in with_left["rooms"]["leave"], with_left["rooms"]
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_leave_while_partial_not_sent_to_a_non_lazy_client(
    make_server: ServerFactory,
) -> None:
    await _leave_while_partial(make_server, kick=False)


async def test_kick_while_partial_not_sent_to_a_non_lazy_client(
    make_server: ServerFactory,
) -> None:
    await _leave_while_partial(make_server, kick=True)


async def test_rejected_invite_in_a_partial_room_is_still_sent(
    make_server: ServerFactory,
) -> None:
    """Carol on B, invited by Alice while the room is partial, had the invite in every
    sync: her rejection reaches her non-lazy client as a leave (only a leave ending a
    join made while partial is left out)."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, _members = await _big_room(a)
    api_b, _bob, held = await _join_partially(a, b, room_id)
    carol = await api_b.register("carol")
    r = await api_a.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    first = await eventually(
        lambda: _sync(api_b, carol), lambda body: room_id in body["rooms"]["invite"]
    )
    assert room_id in first["rooms"]["invite"], first["rooms"]
    r = await api_b.post(f"/rooms/{q(room_id)}/leave", {}, token=carol.access_token)
    assert r.status == 200, r.body
    later = await _sync(api_b, carol, first["next_batch"])
    assert room_id in later["rooms"]["leave"], later["rooms"]
    release_resync(b, held)
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
