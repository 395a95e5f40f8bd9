"""``check_auth``: the authorisation rules of room versions 10, 11 and 12,
against a given set of state (spec: rooms/v10, v11, v12 "Authorisation rules").

Rule numbers below are v10/v11 first, v12 in brackets (v12 inserts rule 2).

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
    CREATE,
    CREATE_KEY,
    JOIN,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    THIRD_PARTY_INVITE,
)
from homeserver.rooms.auth.create import check_create, check_federate, check_room_id_matches_create
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.member import (
    ServerSignatureVerifier,
    ThirdPartyInviteVerifier,
    check_member,
    membership_of,
)
from homeserver.rooms.auth.power_levels import invite_level, required_power_level, user_power_level
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
    (rule 4.2 [5.2]). Without them, events needing those checks are refused.
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
    # 10 [11]: otherwise, allow.
