"""matrix-nio after a partial-state join (issue 15 #7): it encrypts for every member.

nio does not lazy-load members: it takes a room's members from /sync's state. Bob (nio,
on B) joins alice's encrypted room on A while B's resync is held back, so the room is
partial on B: it must not reach Bob's /sync yet (its state lacks alice's and carol's
memberships, and the resync fills them in place). Once the resync has run, the room comes
as newly joined with every member; nio then asks for alice's and carol's device keys, and
both decrypt Bob's message.
"""

from __future__ import annotations

from pathlib import Path

import nio
import pytest

from tests.conftest import ServerFactory
from tests.federation.partial_support import hold_resync, partial_joins, release_resync
from tests.interop.e2ee_people import create_encrypted_room, invite_and_join, register
from tests.interop.test_e2ee_scenario import myelin, secret

pytestmark = pytest.mark.interop


async def test_nio_encrypts_for_every_member_after_a_partial_join(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    a, b = await myelin(make_server), await myelin(make_server)
    store = tmp_path / "stores"
    alice = await register(a.client_url, a.hs.config.server_name, "alice", store)
    carol = await register(a.client_url, a.hs.config.server_name, "carol", store)
    bob = await register(b.client_url, b.hs.config.server_name, "bob", store)
    try:
        room_id = await create_encrypted_room(alice)  # named: no heroes sent to B
        await invite_and_join(alice, carol, room_id)
        invited = await alice.client.room_invite(room_id, bob.user_id)
        assert isinstance(invited, nio.RoomInviteResponse), invited
        await bob.until(lambda: room_id in bob.client.invited_rooms, "the invite")

        held = hold_resync(b)
        joined = await bob.client.join(room_id)
        assert isinstance(joined, nio.JoinResponse), joined
        room = await partial_joins(b).rooms.rooms.get_room(room_id)
        assert room is not None and await partial_joins(b).is_partial(room.room_nid)
        # Partial: left out of nio's (non-lazy) sync, so nio holds no half member list.
        await bob.step()
        assert room_id not in bob.client.rooms

        release_resync(b, held)
        assert await partial_joins(b).wait_full(room, 60.0)
        await bob.until(lambda: room_id in bob.client.rooms, "the room, once whole")
        members = set(bob.client.rooms[room_id].users)
        assert {alice.user_id, carol.user_id, bob.user_id} <= members

        def knows_their_devices() -> bool:
            devices = bob.client.device_store
            return all(
                any(d.device_id == o.device_id for d in devices.active_user_devices(o.user_id))
                for o in (alice, carol)
            )

        await bob.until(knows_their_devices, "alice's and carol's device keys")
        text = secret("bob-after-partial-join")
        await bob.send(room_id, text)
        await alice.wait_body(room_id, text)
        await carol.wait_body(room_id, text)
    finally:
        for person in (alice, carol, bob):
            await person.close()
