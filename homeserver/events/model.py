"""``Event``: a PDU (the JSON of a room event) with its id and room version.

The PDU dict is the wire form, exactly as signed; it is never mutated after
the event id is computed. Properties read the fields that auth rules, state
resolution and the services need, so those never index raw dicts.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.room_versions import RoomVersion


class Derived:
    """Byte forms and check results worked out from one ``Event``'s PDU, kept so the
    next step does not work them out again (``homeserver.events.derived``)."""

    __slots__ = ("canonical", "content_hash_ok", "signable", "signed_by_us")

    def __init__(self) -> None:
        # Canonical JSON of the whole PDU (its size check, then its stored text).
        self.canonical: bytes | None = None
        # Canonical JSON of the redacted PDU without signatures/unsigned: what the
        # signatures and the reference hash (the event id) cover.
        self.signable: bytes | None = None
        # The content hash matches the content (set when this server computed it).
        self.content_hash_ok: bool | None = None
        # (server name, key id, signature, public key bytes) of the signature this
        # server made over ``signable`` when it built the event.
        self.signed_by_us: tuple[str, str, str, bytes] | None = None


class Event:
    __slots__ = ("derived", "event_id", "pdu", "room_version")

    def __init__(self, event_id: str, pdu: dict[str, Any], room_version: RoomVersion) -> None:
        self.event_id = event_id
        self.pdu = pdu
        self.room_version = room_version
        # Set by ``homeserver.events.derived``; None for most events (loaded ones).
        self.derived: Derived | None = None

    @property
    def room_id(self) -> str:
        room_id = self.pdu.get("room_id")
        if room_id is None and self.room_version.room_id_from_create_event:
            # Room version 12: the create event names the room by its own hash.
            return "!" + self.event_id[1:]
        return str(room_id)

    @property
    def type(self) -> str:
        return str(self.pdu["type"])

    @property
    def state_key(self) -> str | None:
        sk = self.pdu.get("state_key")
        return None if sk is None else str(sk)

    def is_state(self) -> bool:
        return "state_key" in self.pdu

    @property
    def sender(self) -> str:
        return str(self.pdu["sender"])

    @property
    def content(self) -> dict[str, Any]:
        content = self.pdu.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def auth_event_ids(self) -> list[str]:
        return _referenced_ids(self.pdu.get("auth_events", []))

    @property
    def prev_event_ids(self) -> list[str]:
        return _referenced_ids(self.pdu.get("prev_events", []))

    @property
    def depth(self) -> int:
        return int(self.pdu.get("depth", 0))

    @property
    def origin_server_ts(self) -> int:
        return int(self.pdu.get("origin_server_ts", 0))

    @property
    def redacts(self) -> str | None:
        # Room version 11 moved "redacts" into content; read both.
        redacts = self.content.get("redacts", self.pdu.get("redacts"))
        return None if redacts is None else str(redacts)

    @property
    def membership(self) -> str | None:
        m = self.content.get("membership")
        return m if isinstance(m, str) else None

    def state_tuple(self) -> tuple[str, str]:
        return (self.type, self.state_key or "")

    def __repr__(self) -> str:
        return f"<Event {self.event_id} {self.type} {self.state_key!r}>"


def _referenced_ids(entries: Any) -> list[str]:
    """Event ids of ``prev_events``/``auth_events``: plain ids (v3+) or the
    first half of ``[event_id, {"sha256": hash}]`` pairs (v1-v2)."""
    if not isinstance(entries, list):
        return []
    return [e[0] if isinstance(e, list) and e else e for e in entries]
