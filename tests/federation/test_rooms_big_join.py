"""Joining a big remote room keeps its whole state (issue 9).

The resident server's room has a few thousand members; the joining server
used to keep only the first 1,000 state events of the send_join answer, so
``joined_members`` stayed short and an invite that sat past that position
was not seen (the join was refused as "invite only").
"""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from homeserver.rooms.auth.constants import MEMBER
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, settle

MEMBERS = 2500


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await make_server(federated=True), await make_server(federated=True)


async def _fill(server: RunningServer, room_id: str, count: int) -> None:
    """``count`` local members joined through the room's single writer path
    (no accounts: the auth rules only need the membership events)."""
    area = server.hs.rooms_area
    room = await area.rooms.rooms.get_room(room_id)
    assert room is not None
    for i in range(count):
        user = f"@member{i}:{name(server)}"
        await area.rooms.create_and_send(room, user, MEMBER, {"membership": "join"}, user)


async def test_join_of_a_big_invite_only_room_keeps_all_state(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    await _fill(a, room_id, MEMBERS)
    # The room closes and Bob is invited: both events come after every member.
    r = await api_a.put(
        f"/rooms/{q(room_id)}/state/m.room.join_rules/",
        {"join_rule": "invite"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api_a.post(
        f"/rooms/{q(room_id)}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body

    r = await api_b.post(f"/join/{q(room_id)}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)

    expected = MEMBERS + 2
    for api, user in ((api_b, bob), (api_a, alice)):
        r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
        assert r.status == 200, r.body
        assert len(r.body["joined"]) == expected
    r = await api_b.get(f"/rooms/{q(room_id)}/state/m.room.join_rules/", token=bob.access_token)
    assert r.body == {"join_rule": "invite"}
    # Bob's server holds the same state as the resident server.
    r_a = await api_a.get(f"/rooms/{q(room_id)}/state", token=alice.access_token)
    r_b = await api_b.get(f"/rooms/{q(room_id)}/state", token=bob.access_token)
    ids_a = {(e["type"], e["state_key"]): e["event_id"] for e in r_a.body}
    ids_b = {(e["type"], e["state_key"]): e["event_id"] for e in r_b.body}
    assert ids_a == ids_b
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
