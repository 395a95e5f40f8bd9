"""PUT /rooms/{roomId}/redact/{eventId}/{txnId}: a local user redacts an event.

The redaction is an ordinary event through the shared send path. Whether
it may *apply* is checked before sending (client-server "Redactions"):
the sender redacts their own event, or holds the room's redact level.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import forbidden, invalid_param
from homeserver.rooms.auth import user_power_level
from homeserver.rooms.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.rooms.auth.power_levels import redact_level
from homeserver.rooms.persist import TxnRef
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import StateKey


async def redact_event(
    rooms: RoomService,
    user_id: str,
    room_id: str,
    event_id: str,
    reason: str | None,
    txn: TxnRef | None,
) -> str:
    """Send an m.room.redaction of ``event_id``; its event id (idempotent per txn)."""
    if txn is not None:
        earlier = await rooms.events.event_for_txn(txn.user_id, txn.device_id, txn.txn_id)
        if earlier is not None:
            return earlier
    room = await rooms.room_or_forbidden(room_id)
    target = await rooms.events.by_id(event_id)
    if target is not None and target.room_nid != room.room_nid:
        # It could never apply there (a redaction only redacts in its own room).
        raise invalid_param("That event is in another room")
    own = target is not None and target.event.sender == user_id

    def may_redact(state: dict[StateKey, StoredEvent]) -> None:
        if own:
            return
        pl = state.get(POWER_LEVELS_KEY)
        create = state.get(CREATE_KEY)
        level = user_power_level(
            user_id, None if pl is None else pl.event, None if create is None else create.event
        )
        if level < redact_level(None if pl is None else pl.event):
            raise forbidden("You may only redact your own events without the redact power level")

    content: dict[str, Any] = {"redacts": event_id}
    if reason is not None:
        content["reason"] = reason
    stored = await rooms.create_and_send(
        room, user_id, "m.room.redaction", content, None, txn, may_redact
    )
    return stored.event.event_id
