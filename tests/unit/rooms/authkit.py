"""Builders for auth-rule tests: rooms as plain state maps of plain PDUs.

Event ids are made up; in v12 the create event's id gives the room id.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from homeserver.events.model import Event
from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.auth import AuthError, check_auth

VERSIONS = (V10, V11, V12)
VERSION_IDS = [v.identifier for v in VERSIONS]

ALICE = "@alice:a.example"  # the creator
MOD = "@mod:a.example"  # power 50
BOB = "@bob:b.example"  # power 0, joined
CAROL = "@carol:c.example"  # not in the room
DAVE = "@dave:d.example"

CREATE = "m.room.create"
MEMBER = "m.room.member"
PL = "m.room.power_levels"
JR = "m.room.join_rules"
TPI = "m.room.third_party_invite"


def yes(*_args: object) -> bool:
    return True


def no(*_args: object) -> bool:
    return False


class Room:
    """A room's state map plus an event factory."""

    def __init__(
        self, rv: RoomVersion, *, creator: str = ALICE, content: Mapping[str, Any] | None = None
    ) -> None:
        self.rv = rv
        self._n = 0
        create_content: dict[str, Any] = {"room_version": rv.identifier}
        if not rv.implicit_room_creator:
            create_content["creator"] = creator
        create_content.update(content or {})
        pdu: dict[str, Any] = {
            "type": CREATE,
            "state_key": "",
            "sender": creator,
            "content": create_content,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
        }
        if rv.room_id_from_create_event:
            create_id = "$CreateEventHash"
            self.room_id = "!CreateEventHash"
        else:
            create_id = "$CreateEventHash"
            self.room_id = "!room:a.example"
            pdu["room_id"] = self.room_id
        self.create = Event(create_id, pdu, rv)
        self.state: dict[tuple[str, str], Event] = {(CREATE, ""): self.create}

    def make(
        self,
        type: str,
        sender: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        *,
        prev: Sequence[str] = ("$prev",),
        auth_events: Sequence[str] = (),
    ) -> Event:
        self._n += 1
        pdu: dict[str, Any] = {
            "type": type,
            "room_id": self.room_id,
            "sender": sender,
            "content": dict(content),
            "prev_events": list(prev),
            "auth_events": list(auth_events),
            "depth": self._n + 1,
        }
        if state_key is not None:
            pdu["state_key"] = state_key
        return Event(f"$ev{self._n}", pdu, self.rv)

    def put(self, type: str, sender: str, content: Mapping[str, Any], state_key: str = "") -> Event:
        """Add state without checking it."""
        event = self.make(type, sender, content, state_key)
        self.state[(type, state_key)] = event
        return event

    def set_member(self, user: str, membership: str, sender: str | None = None) -> Event:
        return self.put(MEMBER, sender or user, {"membership": membership}, user)

    def member(self, sender: str, target: str, membership: str, **content: Any) -> Event:
        return self.make(MEMBER, sender, {"membership": membership, **content}, target)

    def allowed(self, event: Event, **hooks: Any) -> bool:
        try:
            check_auth(event, self.state, **hooks)
        except AuthError:
            return False
        return True


def pl_content(
    rv: RoomVersion, users: Mapping[str, int] | None = None, **levels: Any
) -> dict[str, Any]:
    """Power levels with ALICE at 100 (unless v12, where creators are not listed)."""
    table: dict[str, int] = {} if rv.privileged_creators else {ALICE: 100}
    table[MOD] = 50
    table.update(users or {})
    return {"users": table, **levels}


def standard_room(
    rv: RoomVersion,
    join_rule: str | None = "public",
    *,
    users: Mapping[str, int] | None = None,
    **levels: Any,
) -> Room:
    """ALICE created the room; ALICE, MOD (50) and BOB (0) are joined."""
    room = Room(rv)
    room.set_member(ALICE, "join")
    room.put(PL, ALICE, pl_content(rv, users, **levels))
    if join_rule is not None:
        room.put(JR, ALICE, {"join_rule": join_rule})
    room.set_member(MOD, "join")
    room.set_member(BOB, "join")
    return room
