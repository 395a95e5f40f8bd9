"""Restricted rooms across two Myelin servers: the resident server checks the allow
conditions, names a local authoriser in make_join and countersigns the join in send_join."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register, settle


def restricted_to(room_id: str) -> dict[str, object]:
    return {
        "preset": "private_chat",
        "initial_state": [
            {
                "type": "m.room.join_rules",
                "state_key": "",
                "content": {
                    "join_rule": "restricted",
                    "allow": [{"type": "m.room_membership", "room_id": room_id}],
                },
            }
        ],
    }


async def test_restricted_join_through_the_resident_server(make_server: ServerFactory) -> None:
    a: RunningServer = await make_server(federated=True)
    b: RunningServer = await make_server(federated=True)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    space = r.body["room_id"]
    r = await api_a.post("/createRoom", restricted_to(space), token=alice.access_token)
    assert r.status == 200, r.body
    room_id = r.body["room_id"]

    # Bob is in no allowed room yet: the resident server refuses the make_join.
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), r.body

    r = await api_b.post(f"/join/{q(space)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    r = await api_b.post(f"/join/{q(room_id)}?via={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    await settle(a, b)
    for api, user in ((api_a, alice), (api_b, bob)):
        r = await api.get(f"/rooms/{q(room_id)}/joined_members", token=user.access_token)
        assert set(r.body["joined"]) == {alice.user_id, bob.user_id}
        r = await api.get(
            f"/rooms/{q(room_id)}/state/m.room.member/{q(bob.user_id)}", token=user.access_token
        )
        assert r.body["join_authorised_via_users_server"] == alice.user_id
    # The join B stores is the one A countersigned.
    rooms = b.hs.rooms_area.rooms
    room = await rooms.rooms.get_room(room_id)
    assert room is not None
    member = await rooms.current_state(room, [("m.room.member", bob.user_id)])
    signatures = member[("m.room.member", bob.user_id)].event.pdu["signatures"]
    assert set(signatures) == {name(a), name(b)}
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)
