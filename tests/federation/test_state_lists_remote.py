"""A room's kept ``GET /members`` and ``GET /state`` answers (homeserver/rooms/
state_lists.py) follow what arrives over federation: a remote member's new displayname
(with ``%`` in it, and stamped ahead of our clock: age 0, never negative) is in the next
answer, and so is that event's redaction, sent by the remote server afterwards."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, q
from tests.federation.scripted_peer import ScriptedPeer
from tests.helpers import Api, User

PERCENT_NAME = "50% %d %s %%"


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def answers(api: Api, user: User, room_id: str) -> tuple[list[Any], list[Any]]:
    """(/members chunk, /state) as ``user`` reads them."""
    r = await api.get(f"/rooms/{q(room_id)}/members", token=user.access_token)
    assert r.status == 200, r.body
    s = await api.get(f"/rooms/{q(room_id)}/state", token=user.access_token)
    assert s.status == 200, s.body
    return r.body["chunk"], s.body


def of(events: list[Any], user_id: str) -> dict[str, Any]:
    found: dict[str, Any] = next(
        e for e in events if e["type"] == "m.room.member" and e["state_key"] == user_id
    )
    return found


async def test_remote_state_and_redaction_reach_the_kept_answers(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    mallory = peer.user("mallory")
    try:
        for _ in range(2):  # built, then kept
            listed, state = await answers(api, alice, room_id)
            assert [e["state_key"] for e in listed] == sorted([alice.user_id, mallory])
            assert "displayname" not in of(state, mallory)["content"]

        fields = peer.event_fields(
            room,
            "m.room.member",
            {"membership": "join", "displayname": PERCENT_NAME},
            sender=mallory,
            state_key=mallory,
        )
        fields["origin_server_ts"] = int(time.time() * 1000) + 60_000
        renamed = peer.build(room.version, fields)
        reply = await peer.send_transaction(name(hs), [renamed.pdu])
        assert reply.status == 200 and reply.body["pdus"][renamed.event_id] == {}, reply.body
        room.add(renamed)
        for _ in range(2):
            listed, state = await answers(api, alice, room_id)
            for events in (listed, state):
                mine = of(events, mallory)
                assert mine["event_id"] == renamed.event_id
                assert mine["content"]["displayname"] == PERCENT_NAME
                assert mine["unsigned"]["age"] == 0
                assert mine["unsigned"]["prev_content"] == {"membership": "join"}

        redaction = peer.event(
            room, "m.room.redaction", {"redacts": renamed.event_id}, sender=mallory
        )
        reply = await peer.send_transaction(name(hs), [redaction.pdu])
        assert reply.status == 200 and reply.body["pdus"][redaction.event_id] == {}, reply.body
        for _ in range(2):
            listed, state = await answers(api, alice, room_id)
            for events in (listed, state):
                mine = of(events, mallory)
                assert mine["content"] == {"membership": "join"}
                assert mine["unsigned"]["redacted_because"]["event_id"] == redaction.event_id
    finally:
        await api.__aexit__(None, None, None)
