"""Building a new local event, and the client-API rules for it that are not auth rules
(checked against the state the event is built on, under the room's lock: RoomService
``precheck``; or against the events it relates to)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.events.builder import build_event
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import reference_hash_entry
from homeserver.events.validate import PduFormatError, check_canonical_json_values
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.relations_store import relation_of
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


async def check_thread_root(events: EventStore, content: dict[str, Any]) -> None:
    """Spec "Threading": a thread cannot start from an event that itself relates."""
    rel = relation_of(content)
    if rel is None or rel.rel_type != "m.thread":
        return
    parent = await events.by_id(rel.relates_to_id)
    if parent is not None and relation_of(parent.event.content) is not None:
        raise MatrixError(400, "M_UNKNOWN", "A thread cannot start from an event with a relation")


def build_local_event(
    server_name: str,
    key: SigningKey,
    event_id: str | None,
    rv: RoomVersion,
    fields: dict[str, Any],
    cited: Sequence[Event] = (),
) -> Event:
    """A new event of ours, hashed and signed. ``cited``: the prev and auth events, whose
    reference hashes v1/v2 events carry; ``event_id``: v1/v2 events name themselves."""
    references = (
        {e.event_id: reference_hash_entry(e.pdu, rv) for e in cited} if rv.event_id_in_pdu else None
    )
    if not rv.strict_canonical_json:
        # v1-v5 accept off-spec JSON from other servers, but our own users'
        # events keep to canonical JSON (v1-deprecated-formatting-off-spec).
        try:
            check_canonical_json_values(fields["content"])
        except PduFormatError as e:
            raise bad_json(f"Invalid event: {e.reason}") from None
    try:
        return build_event(rv, fields, server_name, key, references=references, event_id=event_id)
    except ValueError as e:
        raise bad_json(str(e)) from None
