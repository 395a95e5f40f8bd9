"""Email pushers (spec "Push Notifications": pusher kind ``email``; ``app_id``
``m.email``, ``pushkey`` one of the user's validated email addresses).

Design note
-----------
An email pusher shares the HTTP pushers' cursor into the notification rows
(delivery.py) but sends a digest, not one message per event: when its worker
finds rows past the cursor it waits until the oldest is ``email.notif_delay_ms``
old (10 minutes by default, as Synapse), so a user who reads in a client
meanwhile gets no mail; then it mails the rows still unread (after the user's
read receipt in each room) in one message and moves the cursor past all of
them. The message shows, per room, who wrote and, for events the server can
read, the text; an encrypted event is only "an encrypted message": the
server has no plaintext, and the mail never claims otherwise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param
from homeserver.mail.sender import Mailer
from homeserver.push.actions_store import PushActionRow, PushActionStore
from homeserver.push.pushers_store import Pusher
from homeserver.rooms.store.events_store import StoredEvent

EMAIL_APP_ID = "m.email"
MAX_QUOTE = 300
# (user id, address) -> whether the address is one of the user's validated ones.
OwnsAddress = Callable[[str, str], Awaitable[bool]]
# (room id, sender) -> room_name / sender_display_name, when known.
RoomNamer = Callable[[str, str], Awaitable[dict[str, str]]]


class EmailPushes:
    def __init__(
        self,
        mailer: Mailer,
        owns: OwnsAddress,
        actions: PushActionStore,
        clock: Clock,
        delay_ms: int,
        client_url: str | None,
    ) -> None:
        self.mailer = mailer
        self.owns = owns
        self.actions = actions
        self.clock = clock
        self.delay_ms = delay_ms
        self.client_url = client_url

    async def check_registration(self, user_id: str, app_id: str, pushkey: str) -> None:
        """POST /pushers/set with kind ``email``: the app id is ``m.email`` and the pushkey
        an address the user has validated (else mail could be sent to anyone)."""
        if app_id != EMAIL_APP_ID:
            raise invalid_param(f"Email pushers must have app_id {EMAIL_APP_ID!r}")
        if not await self.owns(user_id, pushkey):
            raise MatrixError(
                400, "M_THREEPID_NOT_FOUND", "The pushkey is not a validated address of yours"
            )

    async def wait_until_due(self, rows: Sequence[PushActionRow]) -> None:
        """Sleep until the oldest row is ``delay_ms`` old (the user may read meanwhile)."""
        due = min(r.ts for r in rows) + self.delay_ms
        wait_ms = due - self.clock.now_ms()
        if wait_ms > 0:
            await asyncio.sleep(wait_ms / 1000)

    async def unread(
        self, user_id: str, rows: Sequence[PushActionRow], events: dict[int, StoredEvent]
    ) -> list[tuple[PushActionRow, StoredEvent]]:
        """The rows the user has not read since (no read receipt at or after them)."""
        with_events = [(r, events[r.event_nid]) for r in rows if r.event_nid in events]
        rooms = sorted({s.event.room_id for _, s in with_events})
        read = await self.actions.read_positions(user_id, rooms)
        out = []
        for row, stored in with_events:
            positions = read.get(stored.event.room_id, {})
            seen = max(positions.get("", -1), positions.get(row.thread_id, -1))
            if row.stream_ordering > seen:
                out.append((row, stored))
        return out

    async def send_digest(
        self,
        pusher: Pusher,
        unread: Sequence[tuple[PushActionRow, StoredEvent]],
        namer: RoomNamer | None,
    ) -> None:
        """One message listing the unread notifications, grouped by room. Raises
        MatrixError when the SMTP server refuses (the caller retries)."""
        by_room: dict[str, list[StoredEvent]] = {}
        for _, stored in unread:
            by_room.setdefault(stored.event.room_id, []).append(stored)
        lines: list[str] = []
        names: list[str] = []
        for room_id, events in by_room.items():
            info = await namer(room_id, events[0].event.sender) if namer else {}
            room_name = info.get("room_name", room_id)
            names.append(room_name)
            lines.append(f"{room_name}:")
            for stored in events:
                who = await self._sender_name(namer, room_id, stored.event.sender)
                lines.append(f"  {who}: {describe(stored)}")
            lines.append("")
        count = len(unread)
        app = self.mailer.config.app_name
        noun = "message" if count == 1 else "messages"
        rooms = names[0] if len(names) == 1 else f"{len(names)} rooms"
        subject = f"[{app}] {count} unread {noun} in {rooms}"
        text = "You have unread messages.\n\n" + "\n".join(lines)
        if self.client_url:
            text += f"\nRead them at {self.client_url}\n"
        text += (
            f"\nYou get this because an email notifier is set up for this address on {app}."
            " Remove it in your client's notification settings to stop these messages.\n"
        )
        await self.mailer.send(pusher.pushkey, subject, text)

    @staticmethod
    async def _sender_name(namer: RoomNamer | None, room_id: str, sender: str) -> str:
        if namer is None:
            return sender
        return (await namer(room_id, sender)).get("sender_display_name", sender)


def describe(stored: StoredEvent) -> str:
    """What the mail says of one event: the text of a readable message, never more than
    the event shows (an encrypted event is only named)."""
    ev = stored.event
    if ev.type == "m.room.encrypted":
        return "(an encrypted message)"
    if ev.type == "m.room.member":
        membership = ev.content.get("membership")
        return "invited you to the room" if membership == "invite" else f"({membership})"
    body: Any = ev.content.get("body")
    if ev.type in ("m.room.message", "m.sticker") and isinstance(body, str):
        return body if len(body) <= MAX_QUOTE else body[:MAX_QUOTE] + "…"
    return f"({ev.type})"
