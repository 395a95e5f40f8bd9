"""Authorisation rules of room versions 10, 11 and 12, as pure functions.

``check_auth_events_selection`` judges an event's ``auth_events`` (rule 2,
v12 rule 3); ``check_auth`` runs every other rule against a set of state;
``auth_types_for_event`` says which state a new event cites.
"""

from homeserver.rooms.auth.auth_events import check_auth_events_selection
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.member import ServerSignatureVerifier, ThirdPartyInviteVerifier
from homeserver.rooms.auth.power_levels import CREATOR_POWER, Power, user_power_level
from homeserver.rooms.auth.redaction import may_apply_redaction
from homeserver.rooms.auth.rules import check_auth
from homeserver.rooms.auth.selection import auth_types_for_event

__all__ = [
    "CREATOR_POWER",
    "AuthError",
    "Power",
    "ServerSignatureVerifier",
    "ThirdPartyInviteVerifier",
    "auth_types_for_event",
    "check_auth",
    "check_auth_events_selection",
    "may_apply_redaction",
    "user_power_level",
]
