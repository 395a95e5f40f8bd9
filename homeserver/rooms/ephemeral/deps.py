"""What the ephemeral services need from other areas, as small Protocols.

Membership and event lookups belong to the room service, and room account
data to the account-data service; neither is in this tree yet. The
services take these callables in their constructors. ``RoomLinks`` holds
the current implementation of each and forwards to it, so the composition
root (and tests) can plug in the real service later without rebuilding
the ephemeral services.

Until then the placeholders refuse honestly: nobody counts as joined (so
every request is answered 403 with a message that says why), no event is
known, and room account data cannot be written.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.errors import MatrixError, forbidden


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


async def rooms_not_available_is_joined(user_id: str, room_id: str) -> bool:
    """Placeholder until the room service lands: refuses every membership check."""
    raise forbidden("Rooms are not available on this server yet")


async def rooms_not_available_event_in_room(room_id: str, event_id: str) -> bool:
    """Placeholder until the room service lands: no event is known."""
    return False


async def account_data_not_available(
    user_id: str, room_id: str, type: str, content: dict[str, Any]
) -> None:
    """Placeholder until the account-data service (branch ``userdata``) lands."""
    raise MatrixError(501, "M_UNRECOGNIZED", "Room account data is not available yet")


@dataclass
class RoomLinks:
    """The current providers of membership, event lookups and room account data.

    Assign the ``*_impl`` fields to switch provider; the services hold the
    forwarding methods below, so the change applies at once.
    """

    is_joined_impl: IsJoined = rooms_not_available_is_joined
    event_in_room_impl: EventInRoom = rooms_not_available_event_in_room
    set_room_account_data_impl: SetRoomAccountData = account_data_not_available

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        return await self.is_joined_impl(user_id, room_id)

    async def event_in_room(self, room_id: str, event_id: str) -> bool:
        return await self.event_in_room_impl(room_id, event_id)

    async def set_room_account_data(
        self, user_id: str, room_id: str, type: str, content: dict[str, Any]
    ) -> None:
        await self.set_room_account_data_impl(user_id, room_id, type, content)
