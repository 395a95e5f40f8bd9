"""The room-version table: every behaviour that differs between room versions.

Spec: "Room Versions" (content/rooms/v1.md ... v12.md and their fragments).
Code never compares version strings; it reads a flag from this table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final

# Event id formats (rooms/fragments v1-event-ids, v3 "Event IDs", v4-event-ids).
EVENT_ID_SERVER_GENERATED: Final = 1  # v1-v2: "$opaque:domain", carried in the PDU
EVENT_ID_HASH_BASE64: Final = 3  # v3: "$" + standard unpadded base64 reference hash
EVENT_ID_HASH_URLSAFE: Final = 4  # v4+: "$" + URL-safe unpadded base64 reference hash


@dataclass(frozen=True, slots=True)
class RoomVersion:
    identifier: str
    stable: bool
    # State resolution algorithm: 1 (v1), 2 (v2-v11) or 21 (v2.1, room version 12).
    state_res: int
    # One of the EVENT_ID_* formats. With EVENT_ID_SERVER_GENERATED the PDU
    # carries "event_id", and prev_events/auth_events are [id, {"sha256": ...}]
    # pairs; the event id's server must sign the event too.
    event_id_format: int
    # v1-v2: rule 11 judges m.room.redaction events by the redact level.
    redaction_auth_rule: bool
    # v1-v5: rule 4 for m.room.aliases; redaction keeps content.aliases.
    special_case_aliases_auth: bool
    # v1-v5: power levels may be floats (rooms/fragments/v1-floaty-power-levels).
    floaty_power_levels: bool
    # v5+: a key signs only events with origin_server_ts up to its valid_until_ts.
    enforce_key_validity: bool
    # v6+: canonical JSON is enforced; power level changes check "notifications".
    strict_canonical_json: bool
    limit_notifications_power_levels: bool
    # v7+: membership "knock" and join rule "knock".
    knock: bool
    # v8+: join rule "restricted" and "join_authorised_via_users_server";
    # redaction keeps join_rules "allow".
    restricted_join: bool
    # v9+: redaction keeps m.room.member "join_authorised_via_users_server".
    redaction_keeps_authorising_user: bool
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

    @property
    def event_id_in_pdu(self) -> bool:
        """v1-v2: the event id is chosen by the sending server and carried in the PDU."""
        return self.event_id_format == EVENT_ID_SERVER_GENERATED


V1 = RoomVersion(
    identifier="1",
    stable=True,
    state_res=1,
    event_id_format=EVENT_ID_SERVER_GENERATED,
    redaction_auth_rule=True,
    special_case_aliases_auth=True,
    floaty_power_levels=True,
    enforce_key_validity=False,
    strict_canonical_json=False,
    limit_notifications_power_levels=False,
    knock=False,
    restricted_join=False,
    redaction_keeps_authorising_user=False,
    strict_integer_power_levels=False,
    knock_restricted=False,
    implicit_room_creator=False,
    updated_redaction_rules=False,
    room_id_from_create_event=False,
    privileged_creators=False,
)
# v2: state resolution v2.
V2 = replace(V1, identifier="2", state_res=2)
# v3: event ids are reference hashes; redactions leave the auth rules.
V3 = replace(V2, identifier="3", event_id_format=EVENT_ID_HASH_BASE64, redaction_auth_rule=False)
# v4: URL-safe event ids.
V4 = replace(V3, identifier="4", event_id_format=EVENT_ID_HASH_URLSAFE)
# v5: signing keys' valid_until_ts is enforced.
V5 = replace(V4, identifier="5", enforce_key_validity=True)
# v6: no m.room.aliases rule, canonical JSON, notifications power levels.
V6 = replace(
    V5,
    identifier="6",
    special_case_aliases_auth=False,
    floaty_power_levels=False,
    strict_canonical_json=True,
    limit_notifications_power_levels=True,
)
# v7: knocking.
V7 = replace(V6, identifier="7", knock=True)
# v8: restricted joins.
V8 = replace(V7, identifier="8", restricted_join=True)
# v9: the authorising user survives redaction.
V9 = replace(V8, identifier="9", redaction_keeps_authorising_user=True)
# v10: integer-only power levels, knock_restricted.
V10 = replace(V9, identifier="10", strict_integer_power_levels=True, knock_restricted=True)
# v11: implicit creator, updated redaction rules.
V11 = replace(V10, identifier="11", implicit_room_creator=True, updated_redaction_rules=True)
# v12: room ids from create events, privileged creators, state resolution v2.1.
V12 = replace(
    V11,
    identifier="12",
    state_res=21,
    room_id_from_create_event=True,
    privileged_creators=True,
)

KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {
    v.identifier: v for v in (V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12)
}
DEFAULT_ROOM_VERSION = V12
