"""Room facts for the ephemeral services' own tests, without a room service.

Small real implementations of the Protocols in
``homeserver.rooms.ephemeral.interfaces`` over in-test sets, so a test of
typing or receipts alone decides who is joined and which events exist. The
tests over HTTP use real rooms instead.
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
