"""Event types and membership values the authorisation rules read."""

from __future__ import annotations

from typing import Final

CREATE: Final = "m.room.create"
MEMBER: Final = "m.room.member"
JOIN_RULES: Final = "m.room.join_rules"
POWER_LEVELS: Final = "m.room.power_levels"
THIRD_PARTY_INVITE: Final = "m.room.third_party_invite"
ALIASES: Final = "m.room.aliases"  # v1-v5 auth rule 4
REDACTION: Final = "m.room.redaction"  # v1-v2 auth rule 11

JOIN: Final = "join"
INVITE: Final = "invite"
LEAVE: Final = "leave"
BAN: Final = "ban"
KNOCK: Final = "knock"

PUBLIC: Final = "public"
RESTRICTED: Final = "restricted"
KNOCK_RESTRICTED: Final = "knock_restricted"

# Key in an m.room.member join naming the member who authorised a restricted join.
AUTHORISING_USER: Final = "join_authorised_via_users_server"

CREATE_KEY: Final = (CREATE, "")
POWER_LEVELS_KEY: Final = (POWER_LEVELS, "")
JOIN_RULES_KEY: Final = (JOIN_RULES, "")
