"""The room-version table: every behaviour that differs between room versions.

Spec: "Room Versions" (content/rooms/v10.md, v11.md, v12.md). Code never
compares version strings; it reads a flag from this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    stable: bool
    # State resolution algorithm: 2 (v2) or 21 (v2.1, room version 12).
    state_res: int
    # v10+: power level values must be integers (not strings).
    strict_integer_power_levels: bool
    # v10+: join rule "knock_restricted" exists.
    knock_restricted: bool
    # v11+: the room creator is the create event's sender (no "creator" key);
    # the v11 redaction algorithm applies.
    implicit_room_creator: bool
    updated_redaction_rules: bool
    # v12: the room id is "!" + the create event's reference hash; the create
    # event has no room_id and is not listed in auth_events; creators
    # (sender + content.additional_creators) have unlimited power.
    room_id_from_create_event: bool
    privileged_creators: bool


V10 = RoomVersion(
    identifier="10",
    stable=True,
    state_res=2,
    strict_integer_power_levels=True,
    knock_restricted=True,
    implicit_room_creator=False,
    updated_redaction_rules=False,
    room_id_from_create_event=False,
    privileged_creators=False,
)
V11 = RoomVersion(
    identifier="11",
    stable=True,
    state_res=2,
    strict_integer_power_levels=True,
    knock_restricted=True,
    implicit_room_creator=True,
    updated_redaction_rules=True,
    room_id_from_create_event=False,
    privileged_creators=False,
)
V12 = RoomVersion(
    identifier="12",
    stable=True,
    state_res=21,
    strict_integer_power_levels=True,
    knock_restricted=True,
    implicit_room_creator=True,
    updated_redaction_rules=True,
    room_id_from_create_event=True,
    privileged_creators=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {v.identifier: v for v in (V10, V11, V12)}
DEFAULT_ROOM_VERSION = V12
