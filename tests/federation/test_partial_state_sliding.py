"""Partial-state rooms in sliding sync (MSC4186, issue 15 #7): two real Myelin servers.

A room joined with partial state lacks the members of other servers until its
resync merges them in place. A sliding sync list or room subscription whose
``required_state`` asks for every member (or all state, or a remote user's
membership) leaves such a room out (and out of the list's count) until its state is
whole, then the room comes as any room not sent yet, whole; a long-poll waiting
meanwhile is woken for it. A list that lazy-loads members (``$LAZY``) or asks for no
members has the room at once.

Bob on B joins A's room with the resync held back (as in test_partial_state_join).
"""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.sync.sliding.required_state import needs_all_members
from tests.conftest import ServerFactory
from tests.federation.partial_support import PARTIAL_ON, partial_joins, release_resync, room_info
from tests.federation.test_partial_state_join import _big_room, _join_partially
from tests.integration.sliding_helpers import all_list, sliding_ok

ALL_MEMBERS = [["m.room.member", "*"]]
LAZY_MEMBERS = [["m.room.member", "$LAZY"], ["m.room.name", ""]]


def _members(room: dict[str, Any]) -> set[str]:
    return {
        e["state_key"]
        for e in room["required_state"]
        if e["type"] == "m.room.member" and e["content"]["membership"] == "join"
    }


def test_which_required_state_waits_for_all_members() -> None:
    here = "b.test"
    assert needs_all_members((("m.room.member", "*"),), here)
    assert needs_all_members((("*", "*"),), here)
    assert needs_all_members((("m.room.member", "@eve:a.test"),), here)
    assert not needs_all_members((("m.room.member", "$LAZY"),), here)
    assert not needs_all_members((("m.room.member", "$ME"), ("m.room.name", "")), here)
    assert not needs_all_members((("m.room.member", "@bob:b.test"),), here)
    assert not needs_all_members((("m.room.name", "*"),), here)
    assert not needs_all_members((), here)


async def test_list_asking_all_members_gets_a_partial_room_once_whole(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}

    # While partial: the list asking for every member leaves the room out, and does not
    # count it; a room subscription asking so is not sent either.
    whole = {"conn_id": "whole", "lists": {"all": all_list(required_state=ALL_MEMBERS)}}
    first = await sliding_ok(api_b, bob, whole)
    assert first["lists"]["all"]["count"] == 0
    assert room_id not in first["rooms"]
    sub = {
        "conn_id": "sub",
        "room_subscriptions": {room_id: {"required_state": ALL_MEMBERS, "timeline_limit": 5}},
    }
    assert room_id not in (await sliding_ok(api_b, bob, sub))["rooms"]
    # Lazy-loading members, or none: the room at once.
    lazy = {"conn_id": "lazy", "lists": {"lazy": all_list(required_state=LAZY_MEMBERS)}}
    got = await sliding_ok(api_b, bob, lazy)
    assert got["lists"]["lazy"]["count"] == 1 and room_id in got["rooms"]
    none = {"conn_id": "none", "lists": {"none": all_list()}}
    assert room_id in (await sliding_ok(api_b, bob, none))["rooms"]

    # A long-poll waiting when the resync ends is woken with the room, whole.
    polling = asyncio.create_task(sliding_ok(api_b, bob, whole, first["pos"], 30000))
    await asyncio.sleep(0.2)
    assert not polling.done()
    release_resync(b, held)
    woken = await asyncio.wait_for(polling, 60.0)
    assert await partial_joins(b).wait_full(await room_info(b, room_id), 60.0)
    assert woken["lists"]["all"]["count"] == 1
    assert woken["rooms"][room_id]["initial"] is True
    assert _members(woken["rooms"][room_id]) == expected
    # The subscription's next answer has it too.
    first_sub = await sliding_ok(api_b, bob, sub)
    assert _members(first_sub["rooms"][room_id]) == expected
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
