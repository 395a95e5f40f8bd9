"""What the ephemeral services need from other areas, as small Protocols.

Membership and event lookups come from the rooms (``RoomMembers``), room
account data from the account-data service; the composition root passes
them to the constructors, so this package imports neither.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol


class IsJoined(Protocol):
    """Whether ``user_id`` is currently joined to ``room_id``."""

    def __call__(self, user_id: str, room_id: str) -> Awaitable[bool]: ...


class EventInRoom(Protocol):
    """Whether the event ``event_id`` exists (is known to us) in ``room_id``."""

    def __call__(self, room_id: str, event_id: str) -> Awaitable[bool]: ...


class SetRoomAccountData(Protocol):
    """Write one room account data event (``type``, ``content``) for ``user_id``."""

    def __call__(
        self, user_id: str, room_id: str, type: str, content: dict[str, Any]
    ) -> Awaitable[None]: ...
