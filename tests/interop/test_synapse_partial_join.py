"""Partial-state joins with a real Synapse, both ways (issue 15 #7).

Myelin joining a Synapse room: Synapse omits the members when asked, so the room is
partial on Myelin (its resync held back by the test with
tests/federation/partial_support.py) while messages flow both ways, and left out of a
/sync that does not lazy-load members; once the resync runs, Myelin knows every member
and that sync gets the room as newly joined. Synapse joining a Myelin room: Synapse asks
for a partial state by default, then fetches the rest from Myelin (``/state_ids``,
``/event``); its member list ends up whole and messages flow both ways.
"""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY
from tests.federation.partial_support import (
    PARTIAL_ON,
    hold_resync,
    partial_joins,
    release_resync,
    room_info,
)
from tests.federation.rooms_support import q
from tests.helpers import Api, User
from tests.interop.synapse import SynapseServer
from tests.interop.test_synapse_federation import (
    apis,  # noqa: F401  (the fixture)
    bodies,
    join,
    joined,
    myelin_user,
    send_text,
    synapse_user,
    tag,
    wait_bodies,
    wait_joined,
)

pytestmark = pytest.mark.interop

OTHERS = 4


async def _myelin_with_alice(
    make_server: ServerFactory, opened: list[Api]
) -> tuple[RunningServer, Api, User]:
    """A federated Myelin with partial-state joins on, and Alice on it (her session
    in ``opened``, the test's ``apis``)."""
    m = await make_server(federated=True, federation={**FAST_RETRY["federation"], **PARTIAL_ON})
    api_m, alice = await myelin_user(m, "alice")
    opened.append(api_m)
    return m, api_m, alice


async def test_myelin_joins_a_synapse_room_with_partial_state(
    make_server: ServerFactory,
    synapse_server: SynapseServer,
    apis: list[Api],  # noqa: F811
) -> None:
    m, api_m, alice = await _myelin_with_alice(make_server, apis)
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.append(api_s)
    r = await api_s.post(
        "/createRoom",
        {"preset": "public_chat", "name": f"partial {tag()}"},
        token=sam.access_token,
    )
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    others = []
    for _ in range(OTHERS):
        api, user = await synapse_user(synapse_server, "crowd")
        apis.append(api)
        assert await join(api, user, room_id) == room_id
        others.append((api, user))

    held = hold_resync(m)
    assert await join(api_m, alice, room_id, via=synapse_server.server_name) == room_id
    room = await room_info(m, room_id)
    partial = partial_joins(m)
    assert await partial.is_partial(room.room_nid)  # Synapse omitted them
    # A /sync that does not lazy-load members (matrix-nio's) leaves the partial room out.
    r = await api_m.get("/sync?timeout=0", token=alice.access_token)
    assert r.status == 200, r.body
    assert room_id not in r.body["rooms"]["join"]
    since = r.body["next_batch"]

    # Both ways while partial: a Synapse member Myelin has no membership of yet, and Alice.
    api_c, carl = others[2]
    await send_text(api_c, carl, room_id, "from the crowd")
    assert await wait_bodies(api_m, alice, room_id, ["from the crowd"]) == ["from the crowd"]
    await send_text(api_m, alice, room_id, "from alice")
    expected = ["from the crowd", "from alice"]
    assert await wait_bodies(api_s, sam, room_id, expected) == expected

    release_resync(m, held)
    assert await partial.wait_full(room, 60.0)
    everyone = {alice.user_id, sam.user_id} | {u.user_id for _, u in others}
    assert await joined(api_m, alice, room_id) == everyone
    # Whole now: the next sync sends it as newly joined, every member in its state.
    r = await api_m.get(f"/sync?timeout=0&since={q(since)}", token=alice.access_token)
    assert r.status == 200, r.body
    room_body = r.body["rooms"]["join"][room_id]
    events = room_body["state"]["events"] + room_body["timeline"]["events"]
    members = {
        e["state_key"]
        for e in events
        if e["type"] == "m.room.member" and e["content"]["membership"] == "join"
    }
    assert members == everyone
    assert everyone - {alice.user_id} <= set(r.body["device_lists"]["changed"])


async def test_synapse_joins_a_myelin_room_with_partial_state(
    make_server: ServerFactory,
    synapse_server: SynapseServer,
    apis: list[Api],  # noqa: F811
) -> None:
    m, api_m, alice = await _myelin_with_alice(make_server, apis)
    r = await api_m.post(
        "/createRoom",
        {"preset": "public_chat", "name": f"myelin {tag()}", "room_version": "12"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    locals_ = [alice]
    for _ in range(OTHERS):
        user = await api_m.register(f"local_{tag()}")
        r = await api_m.post(f"/rooms/{q(room_id)}/join", {}, token=user.access_token)
        assert r.status == 200, r.body
        locals_.append(user)
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis.append(api_s)
    assert await join(api_s, sam, room_id, via=m.hs.config.server_name) == room_id

    await send_text(api_m, locals_[3], room_id, "from a local member")
    assert await wait_bodies(api_s, sam, room_id, ["from a local member"])
    await send_text(api_s, sam, room_id, "from sam")
    expected = ["from a local member", "from sam"]
    assert await wait_bodies(api_m, alice, room_id, expected) == expected
    everyone = {u.user_id for u in locals_} | {sam.user_id}
    assert await wait_joined(api_s, sam, room_id, everyone) == everyone
    assert (await bodies(api_s, sam, room_id))[-2:] == expected
