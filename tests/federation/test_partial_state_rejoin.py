"""A rejoin of a room this server left is a partial-state join too (issue 15 #7).

The spec's ``omit_members`` does not depend on whether the joining server was in the
room before, and the joining server is not in it when it joins through another
(Synapse asks for partial state then too). The room has state from the earlier
membership: the rejoin's partial state replaces its current state, the resync's
merge gives the members as they are now (one who left while we were away is not
joined, one who came is), and the state at the events of the earlier membership
stays as it was (the merge adds only to the state groups made since the rejoin).
"""

from __future__ import annotations

from tests.conftest import ServerFactory
from tests.federation.partial_support import (
    PARTIAL_ON,
    hold_resync,
    partial_joins,
    release_resync,
    room_info,
)
from tests.federation.rooms_support import name, q, send_text, settle
from tests.federation.test_partial_state_join import _big_room, _join_partially, _joined


async def test_rejoin_is_partial_and_completes_with_the_members_of_now(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    release_resync(b, held)
    partial = partial_joins(b)
    room = await room_info(b, room_id)
    assert await partial.wait_full(room, 60.0)

    # An event of the first membership, and B's state at it.
    old_id = await send_text(api_a, members[0], room_id, "before bob left")
    await settle(a, b)
    state = partial.rooms.state
    old = await partial.rooms.events.by_id(old_id)
    assert old is not None and old.state_group is not None
    state_then = dict(await state.state_at_group(old.state_group))

    # Bob leaves (B is out of the room); meanwhile m0 leaves and Late joins on A.
    r = await api_b.post(f"/rooms/{q(room_id)}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_a.post(f"/rooms/{q(room_id)}/leave", {}, token=members[0].access_token)
    assert r.status == 200, r.body
    late = await api_a.register("late")
    r = await api_a.post(f"/rooms/{q(room_id)}/join", {}, token=late.access_token)
    assert r.status == 200, r.body

    # The rejoin is partial.
    held = hold_resync(b)
    r = await api_b.post(f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    assert await partial.is_partial(room.room_nid)
    release_resync(b, held)
    assert await partial.wait_full(room, 60.0)

    # The members of now: m0 (joined when B left) is not, Late is.
    expected = {alice.user_id, bob.user_id, late.user_id} | {m.user_id for m in members[1:]}
    assert await _joined(api_b, bob, room_id) == expected
    # The state at the earlier membership's event is as it was.
    state.forget_cached()
    assert dict(await state.state_at_group(old.state_group)) == state_then
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_rejoin_before_the_merge_completes_once(make_server: ServerFactory) -> None:
    """Bob leaves while the room is still partial and joins again: the room stays
    partial (the marker now names the new join) and one merge makes it whole."""
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    room_id, api_a, alice, members = await _big_room(a)
    api_b, bob, held = await _join_partially(a, b, room_id)
    r = await api_b.post(f"/rooms/{q(room_id)}/leave", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_b.post(f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    partial = partial_joins(b)
    room = await room_info(b, room_id)
    assert await partial.is_partial(room.room_nid)
    release_resync(b, held)
    assert await partial.wait_full(room, 60.0)
    expected = {alice.user_id, bob.user_id} | {m.user_id for m in members}
    assert await _joined(api_b, bob, room_id) == expected
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
