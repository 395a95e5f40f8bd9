"""Our events as a remote server checks them: the PDU a peer receives over federation
carries a content hash, event id and signature that the peer's own recomputation,
with the key our key server publishes, confirms; and it is byte for byte the event we
stored. (A local event's hash and signature are computed once, when it is built:
``homeserver.events.derived``.)"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.keys import decode_verify_key_base64
from homeserver.events.signing import check_content_hash, compute_event_id, verify_event_signature
from tests.conftest import ServerFactory
from tests.federation.rooms_support import name, peer_in_public_room, q
from tests.federation.scripted_peer import ScriptedPeer, wait_for


@pytest.fixture
async def peer(tmp_path: Path) -> AsyncIterator[ScriptedPeer]:
    async with ScriptedPeer(tmp_path / "peer") as p:
        yield p


async def test_received_copy_verifies_and_matches_the_stored_event(
    make_server: ServerFactory, peer: ScriptedPeer
) -> None:
    setup = await peer_in_public_room(make_server, peer)
    hs, api, alice, room_id = setup.hs, setup.api, setup.alice, setup.room_id
    dest = name(hs)
    r = await api.put(
        f"/rooms/{q(room_id)}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "checked like any other ☃"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    event_id = r.body["event_id"]
    r = await api.put(
        f"/rooms/{q(room_id)}/state/m.room.topic/",
        {"topic": "a state event too"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    topic_id = r.body["event_id"]

    def received() -> dict[str, dict[str, object]]:
        # Through the wire's JSON, as the peer would parse it.
        pdus = json.loads(json.dumps(peer.pdus_received(room_id)))
        return {compute_event_id(p, setup.room.version): p for p in pdus}

    got = await wait_for(lambda: event_id in received() and topic_id in received())
    assert got
    keys = await peer.request(dest, "GET", "/_matrix/key/v2/server")
    assert keys.status == 200, keys.body
    published = keys.body["verify_keys"]
    rv = setup.room.version
    stored_events = await hs.hs.rooms_area.rooms.events.by_ids([event_id, topic_id])
    for eid in (event_id, topic_id):
        pdu = received()[eid]
        assert compute_event_id(pdu, rv) == eid
        assert check_content_hash(pdu)
        sigs = pdu["signatures"][dest]
        assert sigs and set(sigs) <= set(published)
        for key_id, _sig in sigs.items():
            key = decode_verify_key_base64(published[key_id]["key"])
            verify_event_signature(pdu, rv, dest, key_id, key)
        # Sent and stored: the same bytes.
        stored = stored_events[eid].event.pdu
        assert encode_canonical_json(pdu) == encode_canonical_json(stored)
    await api.__aexit__(None, None, None)
