"""Typing shared by every process over one PostgreSQL database.

Design note
-----------
Typing lives in memory (typing.py), so with several processes each would
know only the typing its own clients reported, and a sync token's typing
position would mean something else on every process. Instead, a process
that takes a change (``PUT /typing``, an ``m.typing`` EDU, an expiry) does
not apply it: in one transaction it takes the next position of the
``typing`` counter row (``user_data_streams``, migration 0300) and NOTIFYs
the change on the signal bus channel. The counter row stays locked until
commit and PostgreSQL queues a transaction's notifications at its commit,
so every listening process, the taker included, receives the changes in
position order and applies them at that position (``apply_shared``)::

    taker:   UPDATE counter RETURNING p; pg_notify({p, change}); COMMIT
    every process (taker too): LISTEN -> typing.apply_shared(p, change)

Every process then holds the same lists at the same positions under the
shared epoch ``SHARED_EPOCH``, and a token taken on one is valid on all.
The message's ``o`` is not the bus origin of the sender, so the bus hands
the taker its own message too.

A process that starts later begins at the counter's current value and
knows nobody typing (typing is ephemeral: that is what a restart does).
After the bus reconnects, changes may have been missed: the process sends
a stop for everyone it believes is typing, so every process agrees again
(a stop for someone not typing is a no-op there). Federation EDUs are sent
by the taker only (``TypingChange.taken_here``); application services
hear every change on the main process, which applies all of them.
"""

from __future__ import annotations

import json
import logging
from typing import Final

from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.storage.database import Database
from homeserver.streams.pg_bus import CHANNEL, PgSignalBus

log = logging.getLogger("myelin.typing.shared")

TOPIC: Final = "typing"
STREAM: Final = "typing"
# The epoch of shared positions (hex, as tokens require): they live in the database.
SHARED_EPOCH: Final = "db"


class SharedTyping:
    """Connects one process's ``TypingService`` to the others through PostgreSQL."""

    def __init__(self, db: Database, bus: PgSignalBus, typing: TypingService) -> None:
        self.db = db
        self.bus = bus
        self.typing = typing
        bus.subscribe(TOPIC, self._on_message)

    async def start(self) -> None:
        """Once the bus listens: start at the counter's current position (before
        serving; a change that arrived meanwhile was applied, and is at or below it)."""
        position = await self.db.fetchval(
            "SELECT pos FROM user_data_streams WHERE stream = $1", STREAM
        )
        self.typing.epoch = SHARED_EPOCH
        self.typing.position = max(self.typing.position, int(position))
        self.typing.share = self.share

    async def share(self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None) -> None:
        """Send one change to every process, this one included."""
        async with self.db.transaction() as txn:
            position = int(
                await txn.fetchval(
                    "UPDATE user_data_streams SET pos = pos + 1 WHERE stream = $1 RETURNING pos",
                    STREAM,
                )
            )
            change = json.dumps([position, user_id, room_id, typing, timeout_ms, self.bus.origin])
            # "o" differs from every bus origin, so the taker receives its own change too.
            payload = json.dumps({"o": "typing", "k": "msg", "t": TOPIC, "x": [change]})
            await txn.execute("SELECT pg_notify($1, $2)", CHANNEL, payload)

    def _on_message(self, changes: list[str] | None) -> None:
        if changes is None:
            self._resync()
            return
        for text in changes:
            try:
                position, user_id, room_id, typing, timeout_ms, taker = json.loads(text)
                self.typing.apply_shared(
                    int(position),
                    str(user_id),
                    str(room_id),
                    bool(typing),
                    None if timeout_ms is None else int(timeout_ms),
                    taker == self.bus.origin,
                )
            except (ValueError, TypeError):
                log.warning("a malformed typing message was ignored")

    def _resync(self) -> None:
        """Changes may have been missed: stop everyone this process thinks is typing,
        at new positions every process applies."""
        for user_id, room_id in self.typing.known_typing():
            self.typing.apply(user_id, room_id, False)
