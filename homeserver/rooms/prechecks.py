"""Client-API rules for new local events that are not auth rules: checked against the
state the event is built on, under the room's lock (RoomService ``precheck``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeserver.errors import forbidden
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import StateKey

ENCRYPTION = "m.room.encryption"


def no_encryption_downgrade(
    content: dict[str, Any],
) -> Callable[[dict[StateKey, StoredEvent]], None]:
    """Refuse an m.room.encryption event that would turn encryption off or change it."""

    def check(state: dict[StateKey, StoredEvent]) -> None:
        current = state.get((ENCRYPTION, ""))
        if current is None:
            return
        before = current.event.content.get("algorithm")
        if content.get("algorithm") != before:
            raise forbidden(
                "Encryption cannot be turned off or changed once enabled: a downgrade would let"
                " the server read new messages. Upgrade the room to a new one instead."
            )

    return check
