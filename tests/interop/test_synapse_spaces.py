"""Spaces between Myelin and a real Synapse: a Myelin space with a sub-space on Synapse,
and a Synapse space with a sub-space on Myelin, each browsed with GET /hierarchy from its
own server (which asks the other over federation GET /hierarchy/{roomId})."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import q
from tests.helpers import Api, User
from tests.interop.synapse import SynapseServer
from tests.interop.test_synapse_federation import apis, myelin_user, synapse_user

pytestmark = pytest.mark.interop
__all__ = ["apis"]
WAIT_S = 30.0


async def create(api: Api, user: User, name: str, space: bool) -> str:
    body: dict[str, Any] = {"name": name, "preset": "public_chat"}
    if space:
        body["creation_content"] = {"type": "m.space"}
    r = await api.post("/createRoom", body, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def add_child(api: Api, user: User, parent: str, child: str, via: str) -> None:
    r = await api.put(
        f"/rooms/{q(parent)}/state/m.space.child/{q(child)}",
        {"via": [via]},
        token=user.access_token,
    )
    assert r.status == 200, r.body


async def names(api: Api, user: User, room: str) -> list[str]:
    r = await api.get(f"/_matrix/client/v1/rooms/{q(room)}/hierarchy", token=user.access_token)
    if r.status != 200:
        return [f"status {r.status}: {r.body}"]
    return [str(room.get("name")) for room in r.body["rooms"]]


async def test_spaces_browsed_across_myelin_and_synapse(
    make_server: ServerFactory, synapse_server: SynapseServer, apis: list[Api]
) -> None:
    m = await make_server(federated=True, **FAST_RETRY)
    m_name = m.hs.config.server_name
    api_m, alice = await myelin_user(m, "alice")
    api_s, sam = await synapse_user(synapse_server, "sam")
    apis += [api_m, api_s]
    s_name = synapse_server.server_name

    m_top = await create(api_m, alice, "M top", space=True)
    m_sub = await create(api_m, alice, "M sub", space=True)
    m_room = await create(api_m, alice, "M room", space=False)
    s_top = await create(api_s, sam, "S top", space=True)
    s_sub = await create(api_s, sam, "S sub", space=True)
    s_room = await create(api_s, sam, "S room", space=False)
    await add_child(api_m, alice, m_top, s_sub, s_name)
    await add_child(api_m, alice, m_sub, m_room, m_name)
    await add_child(api_s, sam, s_top, m_sub, m_name)
    await add_child(api_s, sam, s_sub, s_room, s_name)

    # From Myelin: the sub-space and its room come from Synapse.
    got = await eventually(lambda: names(api_m, alice, m_top), lambda n: len(n) == 3, WAIT_S)
    assert got == ["M top", "S sub", "S room"]
    # From Synapse: the sub-space and its room come from Myelin.
    got = await eventually(lambda: names(api_s, sam, s_top), lambda n: len(n) == 3, WAIT_S)
    assert got == ["S top", "M sub", "M room"]
