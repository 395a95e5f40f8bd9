"""``check_auth``: the authorisation rules of room versions 1 to 12, against a
given set of state (spec: rooms/fragments v1-auth-rules, v3-auth-rules,
v8-auth-rules, rooms/v6, v7, v10, v11, v12 "Authorisation rules").

Rule numbers below are v10/v11 first, v12 in brackets (v12 inserts rule 2).
Versions 1-5 have an extra rule 4 for ``m.room.aliases`` (so their later
rules are numbered one higher) and v1-v2 a rule 11 for ``m.room.redaction``;
the version table's flags switch them on.

What belongs to the caller, not to this module:

* signatures of the sender's server and hash checks (PDU receipt steps 2, 3);
* rule 2 [3] on ``auth_events`` -- ``check_auth_events_selection``, run with
  the event's own auth events;
* that the create event in ``auth_state`` was accepted (v12 rule 2);
* redactions: the rules treat ``m.room.redaction`` like any other event
  (the *redact level* is not an auth rule). Whether a redaction is *applied*
  is "Handling redactions": see ``redaction.may_apply_redaction``.

``auth_state`` maps ``(type, state_key)`` to the state the check runs
against: the event's auth events, the state before it, or the current state
(PDU receipt steps 4-6). In v12 it must hold the create event although the
create event is never among ``auth_events``.
"""

from __future__ import annotations

from collections.abc import Mapping

from homeserver.events.model import Event
from homeserver.rooms.auth.constants import (
    ALIASES,
    CREATE,
    CREATE_KEY,
    JOIN,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    REDACTION,
    THIRD_PARTY_INVITE,
)
from homeserver.rooms.auth.create import check_create, check_federate, check_room_id_matches_create
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.auth.member import (
    ServerSignatureVerifier,
    ThirdPartyInviteVerifier,
    check_member,
    membership_of,
)
from homeserver.rooms.auth.power_levels import (
    invite_level,
    redact_level,
    required_power_level,
    user_power_level,
)
from homeserver.rooms.auth.power_levels_check import check_power_levels


def check_auth(
    event: Event,
    auth_state: Mapping[tuple[str, str], Event],
    *,
    verify_third_party_invite: ThirdPartyInviteVerifier | None = None,
    verify_server_signature: ServerSignatureVerifier | None = None,
) -> None:
    """Raise AuthError unless ``event`` is authorised by ``auth_state``.

    ``verify_third_party_invite`` checks the ``signed`` object of a
    third-party invite (rule 4.4.1.7 [5.4.1.7]); ``verify_server_signature``
    checks the signature of the authorising server of a restricted join
    (rule 4.2 [5.2]). Without the latter, such joins are refused; without the
    former, the ed25519 check of ``events.signing`` is used.
    """
    if event.type == CREATE:
        check_create(event)  # 1
        return
    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("no m.room.create event in the auth state")
    if event.room_version.room_id_from_create_event:
        check_room_id_matches_create(event, create)  # [2]
    check_federate(event, create)  # 3 [4]
    if event.room_version.special_case_aliases_auth and event.type == ALIASES:
        _check_aliases(event)  # v1-v5 rule 4
        return
    if event.type == MEMBER:  # 4 [5]
        check_member(
            event,
            auth_state,
            create,
            verify_third_party_invite=verify_third_party_invite,
            verify_server_signature=verify_server_signature,
        )
        return
    sender = event.sender
    if membership_of(auth_state, sender) != JOIN:
        raise AuthError("sender is not joined to the room")  # 5 [6]
    power_levels = auth_state.get(POWER_LEVELS_KEY)
    sender_level = user_power_level(sender, power_levels, create)
    if event.type == THIRD_PARTY_INVITE:  # 6 [7]
        if sender_level < invite_level(power_levels):
            raise AuthError("sender's power level is below the invite level")
        return
    if required_power_level(event.type, event.is_state(), power_levels) > sender_level:
        raise AuthError("sender's power level is too low for this event type")  # 7 [8]
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != sender:
        raise AuthError("state_key names another user")  # 8 [9]
    if event.type == POWER_LEVELS:  # 9 [10]
        check_power_levels(event, power_levels, create, sender_level)
        return
    if event.room_version.redaction_auth_rule and event.type == REDACTION:
        _check_redaction_v1(event, power_levels, create)  # v1-v2 rule 11
    # 10 [11]: otherwise, allow.


def _check_aliases(event: Event) -> None:
    """v1-v5 rule 4: a server may set only its own ``m.room.aliases`` entry."""
    state_key = event.state_key
    if state_key is None:
        raise AuthError("m.room.aliases event has no state_key")
    if domain_of(event.sender) != state_key:
        raise AuthError("m.room.aliases state_key is not the sender's server")


def _check_redaction_v1(event: Event, power_levels: Event | None, create: Event) -> None:
    """v1-v2 rule 11: the redact level, or the same server named both event ids."""
    if user_power_level(event.sender, power_levels, create) >= redact_level(power_levels):
        return
    redacts = event.redacts
    if redacts is not None and domain_of(redacts) == domain_of(event.event_id):
        return
    raise AuthError("sender cannot redact this event")
