"""The event id a transaction answer names for a PDU of a room we do not know."""

from __future__ import annotations

from federation.receiver import event_id_v11
from homeserver.events.room_versions import V11
from homeserver.events.signing import compute_event_id


async def test_v1_pdus_name_themselves_others_get_the_v11_hash_id() -> None:
    pdu = {
        "type": "m.room.message",
        "room_id": "!r:a.example",
        "sender": "@u:a.example",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 2,
        "origin_server_ts": 1,
        "hashes": {"sha256": "x"},
    }
    assert await event_id_v11(dict(pdu, event_id="$abc:a.example")) == "$abc:a.example"
    assert await event_id_v11(pdu) == compute_event_id(pdu, V11)
    # A hash-shaped "event_id" is no v1 id: the hash id is computed as for v11.
    hashy = dict(pdu, event_id="$" + "A" * 43)
    assert await event_id_v11(hashy) == compute_event_id(hashy, V11)
