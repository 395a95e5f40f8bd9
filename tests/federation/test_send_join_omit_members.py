"""The resident side of a partial-state join (server-server ``PUT /v2/send_join``
with ``omit_members=true``): a real Myelin room, joined by a scripted peer that
checks the answer the way a joining server relies on it.

What must hold: ``members_omitted`` and ``servers_in_room`` are given; the state
has no membership events but the heroes' when the room has neither a name nor
an alias; the auth chain has what the returned events (and the join) need to be
checked, and nothing the state already holds; without the flag the answer is
the whole state as before.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import RunningServer
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import compute_event_id
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, q, register
from tests.federation.scripted_peer import _TEMPLATE_FIELDS, Reply, ScriptedPeer
from tests.helpers import Api, User

MEMBERS = 8


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def _room_with_members(
    server: RunningServer, named: bool
) -> tuple[str, Api, User, list[str]]:
    api, alice = await register(server, "alice")
    body: dict[str, Any] = {"preset": "public_chat"}
    if named:
        body["name"] = "A named room"
    r = await api.post("/createRoom", body, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    members = [alice.user_id]
    for i in range(MEMBERS):
        user = await api.register(f"member{i}")
        r = await api.post(f"/rooms/{q(room_id)}/join", {}, token=user.access_token)
        assert r.status == 200, r.body
        members.append(user.user_id)
    return room_id, api, alice, members


async def _send_join(
    peer: ScriptedPeer, server: RunningServer, room_id: str, query: dict[str, Any] | None
) -> tuple[Reply, str]:
    destination = name(server)
    user_id = peer.user("joiner")
    made = await peer.request(
        destination,
        "GET",
        f"/_matrix/federation/v1/make_join/{q(room_id)}/{q(user_id)}",
        query={"ver": sorted(KNOWN_ROOM_VERSIONS)},
    )
    assert made.status == 200, made.body
    version = KNOWN_ROOM_VERSIONS[made.body["room_version"]]
    template = made.body["event"]
    fields = {k: template[k] for k in _TEMPLATE_FIELDS if k in template}
    fields["sender"] = user_id
    fields["state_key"] = user_id
    fields["content"] = {"membership": "join"}
    join = peer.build(version, fields)
    sent = await peer.request(
        destination,
        "PUT",
        f"/_matrix/federation/v2/send_join/{q(room_id)}/{quote(join.event_id, safe='')}",
        join.pdu,
        query=query,
    )
    return sent, join.event_id


def _ids(pdus: list[dict[str, Any]], version: str) -> dict[str, dict[str, Any]]:
    rv = KNOWN_ROOM_VERSIONS[version]
    return {compute_event_id(p, rv): p for p in pdus}


async def _joined(
    make_server: ServerFactory, peer: ScriptedPeer, named: bool, omit_members: str
) -> tuple[RunningServer, Api, list[str], Reply]:
    """A fresh server's room of ``MEMBERS``, and the peer's send_join answer with the flag."""
    server = await make_server(federated=True)
    room_id, api, _alice, members = await _room_with_members(server, named)
    sent, _ = await _send_join(peer, server, room_id, {"omit_members": omit_members})
    return server, api, members, sent


def _members_in_state(sent: Reply) -> list[str]:
    """The state keys of the membership events in a send_join answer's state."""
    state = _ids(sent.body["state"], "12")
    return [p["state_key"] for p in state.values() if p["type"] == "m.room.member"]


async def test_omit_members_leaves_members_out_and_trims_the_chain(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    a, api, members, sent = await _joined(make_server, peer, named=True, omit_members="true")
    assert sent.status == 200, sent.body
    body = sent.body
    assert body["members_omitted"] is True
    assert body["servers_in_room"] == [name(a)]  # before the join: not the joiner's
    state = _ids(body["state"], "12")
    chain = _ids(body["auth_chain"], "12")
    types = {p["type"] for p in state.values()}
    assert "m.room.member" not in types  # named room: no heroes needed
    assert {"m.room.create", "m.room.power_levels", "m.room.join_rules", "m.room.name"} <= types
    assert not state.keys() & chain.keys()  # what the state holds is not repeated
    # Every returned event's auth events are returned too (the joiner can check them).
    given = {**state, **chain}
    for pdu in [*given.values(), body["event"]]:
        assert set(pdu["auth_events"]) <= given.keys()
    # Only the creator's membership is in the chain (it authorises the room's setup):
    # the other members' joins are left out.
    chain_members = {p["state_key"] for p in chain.values() if p["type"] == "m.room.member"}
    assert chain_members == {members[0]}
    await api.__aexit__(None, None, None)


async def test_unnamed_room_keeps_its_heroes(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    _a, api, members, sent = await _joined(make_server, peer, named=False, omit_members="true")
    assert sent.status == 200, sent.body
    # The first five members by arrival: the creator and member0..member3.
    assert sorted(_members_in_state(sent)) == sorted(members[:5])
    await api.__aexit__(None, None, None)


async def test_without_the_flag_the_whole_state(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    _a, api, members, sent = await _joined(make_server, peer, named=True, omit_members="false")
    assert sent.status == 200, sent.body
    assert sent.body["members_omitted"] is False
    assert set(_members_in_state(sent)) == set(members)
    await api.__aexit__(None, None, None)


async def test_a_bad_flag_is_a_clear_error(make_server: ServerFactory, peer: ScriptedPeer) -> None:
    _a, api, _members, sent = await _joined(make_server, peer, named=True, omit_members="yes")
    assert sent.status == 400, sent.body
    assert sent.body["errcode"] == "M_INVALID_PARAM"
    await api.__aexit__(None, None, None)
