"""Forked room histories built by a scripted peer, for the state resolution tests.

``Branch`` builds events one after another on a copy of the peer's view of a
room (so two branches can grow from the same point); ``missing_events``
answers ``/get_missing_events`` from the events the peer built.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from homeserver.events.model import Event
from tests.federation.scripted_peer import PeerRoom, ScriptedPeer


def missing_events(known: dict[str, Event], body: Any) -> list[dict[str, Any]]:
    """The spec's get_missing_events over the peer's events: walk back from the
    latest events to the earliest, at most ``limit``, oldest first."""
    earliest = set(body.get("earliest_events", []))
    limit = int(body.get("limit", 10))
    latest = [e for e in body.get("latest_events", []) if e in known]
    queue = deque(p for e in latest for p in known[e].prev_event_ids)
    found: dict[str, Event] = {}
    while queue and len(found) < limit:  # breadth first: the nearest events first
        event_id = queue.popleft()
        if event_id in earliest or event_id in found or event_id not in known:
            continue
        found[event_id] = known[event_id]
        queue.extend(known[event_id].prev_event_ids)
    return [e.pdu for e in sorted(found.values(), key=lambda e: e.depth)]


class Branch:
    """Events built on a copy of the peer's view of the room, one after another."""

    def __init__(self, peer: ScriptedPeer, room: PeerRoom) -> None:
        self.peer = peer
        self.room = PeerRoom(room.room_id, room.version, dict(room.state), {}, list(room.head))
        self.room.depth = room.depth
        self.events: list[Event] = []

    def add(
        self, event_type: str, content: dict[str, Any], sender: str, state_key: str | None
    ) -> Event:
        fields = self.peer.event_fields(
            self.room, event_type, content, sender=sender, state_key=state_key
        )
        event = self.peer.build(self.room.version, fields)
        self.room.add(event)
        self.events.append(event)
        return event
