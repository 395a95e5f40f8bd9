"""PDUs of one room in one transaction that chain are checked one by one and persisted
together (``federation.pdu.chain``): a bad PDU among them is refused or rejected exactly
as alone and never costs the others, the per-PDU answers are unchanged, and a chain
whose transaction fails falls back to one PDU at a time."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Queries, count_statements
from tests.conftest import ENGINE, ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, timeline_bodies
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer

INTERNAL = "internal error while processing the event"


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


def message(peer: ScriptedPeer, room: PeerRoom, body: str, *, sender: str | None = None) -> Event:
    return peer.event(room, "m.room.message", {"msgtype": "m.text", "body": body}, sender=sender)


def chain(peer: ScriptedPeer, room: PeerRoom, bodies: list[str]) -> list[Event]:
    """Messages each on top of the one before, remembered by the peer."""
    out = []
    for body in bodies:
        event = message(peer, room, body)
        room.add(event)
        out.append(event)
    return out


def bad_signature(event: Event) -> dict[str, Any]:
    pdu = dict(event.pdu)
    sigs = {
        s: dict.fromkeys(keys, base64.b64encode(bytes(64)).decode().rstrip("="))
        for s, keys in pdu["signatures"].items()
    }
    pdu["signatures"] = sigs
    return pdu


async def test_a_bad_pdu_in_the_middle_keeps_the_others(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)

    first = chain(peer, room, ["a1", "a2"])
    forged = message(peer, room, "forged")  # on a2, never part of the peer's room
    middle = chain(peer, room, ["a3"])
    stranger = message(peer, room, "stranger", sender=peer.user("eve"))  # not in the room
    last = chain(peer, room, ["a4", "a5"])
    pdus = [
        *(e.pdu for e in first),
        bad_signature(forged),
        *(e.pdu for e in middle),
        stranger.pdu,
        *(e.pdu for e in last),
    ]
    reply = await peer.send_transaction(name(hs), pdus)
    assert reply.status == 200, reply.body
    good = [*first, *middle, *last]
    assert reply.body["pdus"] == {
        **{e.event_id: {} for e in good},
        forged.event_id: {"error": "Invalid event or signature"},
        # Rejected by the auth rules and stored as rejected: an empty result, as alone.
        stranger.event_id: {},
    }
    assert await timeline_bodies(api, alice, room_id) == ["a1", "a2", "a3", "a4", "a5"]
    events = hs.hs.rooms_area.events
    assert await events.by_id(forged.event_id) is None
    rejected = await events.by_id(stranger.event_id)
    assert rejected is not None and rejected.rejected_reason is not None
    assert rejected.stream_ordering is None
    newest = await events.by_id(last[-1].event_id)
    assert newest is not None
    extremities = await events.extremities(newest.room_nid)
    assert [s.event.event_id for s in extremities] == [last[-1].event_id]
    await api.__aexit__(None, None, None)


async def test_a_chain_is_persisted_together(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    fed = hs.hs.federation
    assert fed is not None and fed.rooms is not None
    bodies = [f"m{i}" for i in range(10)]
    pdus = [e.pdu for e in chain(peer, room, bodies)]

    with count_statements() as counted:
        results = await fed.rooms.handle_room_pdus(peer.server_name, pdus)
    assert results == [None] * len(pdus)
    # One read of the room's extremities for the whole chain, not one per PDU (on
    # PostgreSQL the persisting transaction reads them once more: ``write_order``).
    extremity_reads = [
        n
        for sql, n in counted.by_sql.items()
        if sql.startswith("SELECT event_nid FROM forward_extremities")
    ]
    assert sum(extremity_reads) == (2 if ENGINE == "postgres" else 1)
    assert await timeline_bodies(api, alice, room_id) == bodies
    await api.__aexit__(None, None, None)


async def test_a_chain_that_fails_to_commit_falls_back_to_one_by_one(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    hs, api, alice, room_id, room = await peer_in_public_room(make_server, peer)
    events = chain(peer, room, ["b1", "b2", "b3", "broken"])
    broken = events[-1].event_id

    async def fail_on_broken(
        q: Queries, stored: StoredEvent, plan: PersistPlan
    ) -> AfterCommit | None:
        if stored.event.event_id == broken:
            raise RuntimeError("the database gave up on this event")
        return None

    hs.hs.rooms_area.rooms.persister.txn_hooks.append(fail_on_broken)
    reply = await peer.send_transaction(name(hs), [e.pdu for e in events])
    assert reply.status == 200, reply.body
    assert reply.body["pdus"] == {
        **{e.event_id: {} for e in events[:-1]},
        broken: {"error": INTERNAL},
    }
    assert await timeline_bodies(api, alice, room_id) == ["b1", "b2", "b3"]
    await api.__aexit__(None, None, None)
