"""Room facts for the ephemeral-data tests, until the room service exists.

Membership, events and room account data are owned by services that are
not in this tree yet (rooms, userdata). These are small real
implementations of the Protocols in ``homeserver.rooms.ephemeral.deps``
over in-test sets, so the tests decide who is joined and which events
exist. Replace with real rooms once they land.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any


def event_id(name: str) -> str:
    """A syntactically valid (v4+) event id derived from ``name``."""
    digest = hashlib.sha256(name.encode()).digest()
    return "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


class RoomFacts:
    def __init__(self) -> None:
        self.joined: set[tuple[str, str]] = set()  # (user_id, room_id)
        self.events: set[tuple[str, str]] = set()  # (room_id, event_id)
        self.account_data: dict[tuple[str, str, str], dict[str, Any]] = {}

    def join(self, user_id: str, room_id: str) -> None:
        self.joined.add((user_id, room_id))

    def add_event(self, room_id: str, name: str) -> str:
        eid = event_id(name)
        self.events.add((room_id, eid))
        return eid

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        return (user_id, room_id) in self.joined

    async def event_in_room(self, room_id: str, event_id: str) -> bool:
        return (room_id, event_id) in self.events

    async def set_room_account_data(
        self, user_id: str, room_id: str, type: str, content: dict[str, Any]
    ) -> None:
        self.account_data[(user_id, room_id, type)] = content
