"""Reporting content (client-server "Reporting Content"): reports are stored
for the server's admins (table ``content_reports``).

An event report needs the reporter joined to the room and able to see the
event (spec v1.8); otherwise the answer is 404 like an unknown event, so a
report cannot probe for events. A room report needs only a known room
(v1.13: it must not depend on membership).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeserver.clock import Clock
from homeserver.errors import invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.reports_store import ReportStore
from homeserver.rooms.visibility import Visibility

MAX_REASON = 1000

# user id -> whether the user is known to this server (set by the composition root).
UserKnown = Callable[[str], Awaitable[bool]]


class ReportService:
    def __init__(
        self, rooms: RoomService, visibility: Visibility, store: ReportStore, clock: Clock
    ) -> None:
        self.rooms = rooms
        self.visibility = visibility
        self.store = store
        self.clock = clock
        self.user_known: UserKnown | None = None

    def _reason(self, reason: str | None) -> str | None:
        if reason is not None and len(reason) > MAX_REASON:
            raise invalid_param(f"reason is longer than {MAX_REASON} characters")
        return reason

    async def report_event(
        self, user_id: str, room_id: str, event_id: str, reason: str | None, score: int | None
    ) -> None:
        if score is not None and not -100 <= score <= 0:
            raise invalid_param("score must be between -100 and 0")
        missing = not_found("The event could not be found or you may not see it")
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise missing
        member = await self.rooms.members.get(room.room_nid, user_id)
        if member is None or member.membership != "join":
            raise missing
        stored = await self.rooms.events.by_id(event_id)
        if stored is None or stored.room_nid != room.room_nid or stored.stream_ordering is None:
            raise missing
        if not await self.visibility.filter(user_id, room, [stored]):
            raise missing
        await self.store.add(
            user_id,
            self.clock.now_ms(),
            room_id=room_id,
            event_id=event_id,
            reason=self._reason(reason),
            score=score,
        )

    async def report_room(self, user_id: str, room_id: str, reason: str | None) -> None:
        if await self.rooms.rooms.get_room(room_id) is None:
            raise not_found("Unknown room")
        await self.store.add(
            user_id, self.clock.now_ms(), room_id=room_id, reason=self._reason(reason)
        )

    async def report_user(self, user_id: str, target: str, reason: str) -> None:
        """Spec v1.14 "Reporting users": 404 for a user this server does not know."""
        if not is_valid_user_id(target, strict=False):
            raise invalid_param("Invalid user id")
        if self.user_known is None or not await self.user_known(target):
            raise not_found("The user was not found")
        await self.store.add(
            user_id, self.clock.now_ms(), target_user_id=target, reason=self._reason(reason)
        )
