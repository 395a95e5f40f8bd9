"""Build a new local event: assemble the PDU, hash it, sign it, name it.

Spec: server-server "Adding hashes and signatures to outgoing events", rooms
v4+ "Event IDs", rooms v11 event format (``redacts`` lives in content) and
v12 event format (create events carry no ``room_id``).

Pure: the caller supplies the clock (``origin_server_ts``), the DAG position
(``prev_events``, ``auth_events``, ``depth``) and the key. The built event is
not trusted because we built it: it goes through the same format, auth and
persistence checks as a remote one (DESIGN "One way in for every event"); only
the hash and signature computed here are not computed again (``derived``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.events.derived import mark_built
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.events.signing import (
    add_content_hash,
    event_id_from_signable,
    event_signable_bytes,
    sign_signable,
)

_REQUIRED = (
    "type",
    "sender",
    "content",
    "prev_events",
    "auth_events",
    "depth",
    "origin_server_ts",
)
_OPTIONAL = frozenset({"room_id", "state_key", "redacts"})
_ALLOWED = _OPTIONAL.union(_REQUIRED)


def build_event(
    room_version: RoomVersion,
    fields: dict[str, Any],
    server_name: str,
    signing_key: SigningKey,
    *,
    references: Mapping[str, dict[str, str]] | None = None,
    event_id: str | None = None,
    references_as_given: bool = False,
) -> Event:
    """Hash, sign and name a new event from its fields; ``ValueError`` on missing/unknown ones.

    ``fields``' values are used as given (not copied): do not mutate them
    afterwards, the PDU is immutable once its id is computed.

    Room versions 1-2 (``event_id_in_pdu``): ``event_id`` is the fresh
    ``$opaque:server_name`` id the caller chose (this module draws no random
    numbers), carried inside the PDU; plain ids in ``prev_events``/
    ``auth_events`` become ``[id, hash]`` pairs with the hash from
    ``references`` (``reference_hash_entry`` of each cited event).
    ``references_as_given``: a remote's make_join/leave/knock template, whose
    ``prev_events``/``auth_events`` are sent back as the resident wrote them.
    """
    _check_fields(room_version, fields)
    if room_version.event_id_in_pdu:
        if event_id is None or not event_id.endswith(":" + server_name):
            raise ValueError("a room version 1/2 event needs an event id of our server")
        if references_as_given:
            fields = {**fields, "event_id": event_id}
        else:
            fields = _v1_fields(fields, event_id, references or {})
    # add_content_hash and sign_signable each return a new dict: ``fields`` stays as given.
    hashed = add_content_hash(fields)
    # The signature and the event id (reference hash) cover the same bytes: encoded once.
    signable = event_signable_bytes(hashed, room_version)
    pdu, signature = sign_signable(hashed, signable, server_name, signing_key)
    event = Event(event_id_from_signable(pdu, signable, room_version), pdu, room_version)
    mark_built(event, signable, server_name, signing_key.key_id, signature, signing_key.verify_key)
    return event


def _check_fields(room_version: RoomVersion, fields: dict[str, Any]) -> None:
    """Exactly the fields this room version's event format has, no more, no fewer."""
    unknown = fields.keys() - _ALLOWED
    if unknown:
        raise ValueError(f"unknown event fields: {sorted(unknown)}")
    missing = [key for key in _REQUIRED if key not in fields]
    if missing:
        raise ValueError(f"missing event fields: {missing}")
    if "redacts" in fields and room_version.updated_redaction_rules:
        raise ValueError("room version 11+ puts redacts in content")

    derives_room_id = room_version.room_id_from_create_event and fields["type"] == "m.room.create"
    if derives_room_id and "room_id" in fields:
        raise ValueError("a v12 create event has no room_id: the room id is its own hash")
    if not derives_room_id and "room_id" not in fields:
        raise ValueError("missing event fields: ['room_id']")


def _v1_fields(
    fields: dict[str, Any], event_id: str, references: Mapping[str, dict[str, str]]
) -> dict[str, Any]:
    """Rooms v1-v2 event format: our own event id and referenced-event pairs."""
    out = dict(fields)
    out["event_id"] = event_id
    for key in ("prev_events", "auth_events"):
        out[key] = [_pair(entry, references) for entry in fields[key]]
    return out


def _pair(entry: Any, references: Mapping[str, dict[str, str]]) -> Any:
    if not isinstance(entry, str):
        return entry  # already a pair (a make_join template of a v1/v2 room)
    hashes = references.get(entry)
    if hashes is None:
        raise ValueError("no reference hash for a cited event")
    return [entry, dict(hashes)]
