"""``m.room.member`` events: v10/v11 rule 4, v12 rule 5 (v1-v5 rule 5).

Earlier versions lack parts, gated by the version table: knocking (v7),
restricted joins and the authorising server's signature (v8),
``knock_restricted`` (v10).

Every path ends in allow (return) or reject (AuthError). The authorising
server's signature of a restricted join needs a key lookup, so it is the
caller's, passed in as a callable (without it such joins are refused). A
third-party invite's ``signed`` block is checked here against the public keys
in the room's ``m.room.third_party_invite`` (pure ed25519) unless the caller
passes another verifier.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias

from homeserver.events.model import Event
from homeserver.events.signing import verify_third_party_signed
from homeserver.rooms.auth.constants import (
    AUTHORISING_USER,
    BAN,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK,
    KNOCK_RESTRICTED,
    LEAVE,
    MEMBER,
    POWER_LEVELS_KEY,
    PUBLIC,
    RESTRICTED,
    THIRD_PARTY_INVITE,
)
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.auth.power_levels import (
    ban_level,
    invite_level,
    kick_level,
    room_creator,
    user_power_level,
)

ThirdPartyInviteVerifier: TypeAlias = Callable[[Mapping[str, Any], Sequence[str]], bool]
"""``(signed, public_keys)``: does any signature in ``signed`` verify with any
of the base64 public keys of the ``m.room.third_party_invite`` event?"""

ServerSignatureVerifier: TypeAlias = Callable[[Event, str], bool]
"""``(event, server_name)``: is ``event`` validly signed by ``server_name``?"""

Key: TypeAlias = tuple[str, str]


def membership_of(auth_state: Mapping[Key, Event], user_id: str) -> str:
    """A user's current membership; ``leave`` when they have no member event."""
    member = auth_state.get((MEMBER, user_id))
    if member is None:
        return LEAVE
    return member.membership or LEAVE


def join_rule_of(auth_state: Mapping[Key, Event]) -> str | None:
    """The current ``join_rule``; ``invite`` when there is no join rules event."""
    join_rules = auth_state.get(JOIN_RULES_KEY)
    if join_rules is None:
        return INVITE
    rule = join_rules.content.get("join_rule")
    return rule if isinstance(rule, str) else None


def check_member(
    event: Event,
    auth_state: Mapping[Key, Event],
    create: Event,
    *,
    verify_third_party_invite: ThirdPartyInviteVerifier | None = None,
    verify_server_signature: ServerSignatureVerifier | None = None,
) -> None:
    """v10/v11 rule 4, v12 rule 5. Returning means "allow"."""
    target = event.state_key
    membership = event.membership
    if target is None or membership is None:
        raise AuthError("member event has no state_key or no membership")  # .1
    content = event.content
    rv = event.room_version
    if rv.restricted_join and AUTHORISING_USER in content:  # .2 (v8+)
        authoriser = content[AUTHORISING_USER]
        if not isinstance(authoriser, str) or verify_server_signature is None:
            raise AuthError("cannot verify the authorising server's signature")
        if not verify_server_signature(event, domain_of(authoriser)):
            raise AuthError("event is not signed by the authorising user's server")
    if membership == JOIN:
        _check_join(event, target, auth_state, create)
    elif membership == INVITE:
        _check_invite(event, target, auth_state, create, verify_third_party_invite)
    elif membership == LEAVE:
        _check_leave(event, target, auth_state, create)
    elif membership == BAN:
        _check_ban(event, target, auth_state, create)
    elif membership == KNOCK and rv.knock:  # v7+
        _check_knock(event, target, auth_state)
    else:
        raise AuthError("unknown membership")  # .8


def _check_join(event: Event, target: str, auth_state: Mapping[Key, Event], create: Event) -> None:
    """Rule .3: joins."""
    prev = event.prev_event_ids
    if len(prev) == 1 and prev[0] == create.event_id and target == room_creator(create):
        return  # .3.1: the creator's first join
    sender = event.sender
    if sender != target:
        raise AuthError("cannot join on behalf of another user")  # .3.2
    current = membership_of(auth_state, target)
    if current == BAN:
        raise AuthError("banned users cannot join")  # .3.3
    rule = join_rule_of(auth_state)
    rv = event.room_version
    if rule == INVITE or (rule == KNOCK and rv.knock):  # .3.4 (knock: v7+)
        if current == INVITE or current == JOIN:
            return
        raise AuthError("the room is invite only")
    restricted = rule == RESTRICTED and rv.restricted_join  # v8+
    if restricted or (rule == KNOCK_RESTRICTED and rv.knock_restricted):  # .3.5
        if current == INVITE or current == JOIN:
            return
        authoriser = event.content.get(AUTHORISING_USER)
        if not isinstance(authoriser, str) or membership_of(auth_state, authoriser) != JOIN:
            raise AuthError("restricted join is not authorised by a joined member")
        power_levels = auth_state.get(POWER_LEVELS_KEY)
        if user_power_level(authoriser, power_levels, create) < invite_level(power_levels):
            raise AuthError("restricted join authoriser cannot invite")
        return
    if rule == PUBLIC:
        return  # .3.6
    raise AuthError("the join rule does not allow joining")  # .3.7


def _check_invite(
    event: Event,
    target: str,
    auth_state: Mapping[Key, Event],
    create: Event,
    verify: ThirdPartyInviteVerifier | None,
) -> None:
    """Rule .4: invites."""
    content = event.content
    if "third_party_invite" in content:
        _check_third_party_invite(event, target, auth_state, verify)
        return
    if membership_of(auth_state, event.sender) != JOIN:
        raise AuthError("sender is not joined to the room")  # .4.2
    current = membership_of(auth_state, target)
    if current == JOIN or current == BAN:
        raise AuthError("target user is joined or banned")  # .4.3
    power_levels = auth_state.get(POWER_LEVELS_KEY)
    if user_power_level(event.sender, power_levels, create) < invite_level(power_levels):
        raise AuthError("sender's power level is below the invite level")  # .4.5


def _check_third_party_invite(
    event: Event,
    target: str,
    auth_state: Mapping[Key, Event],
    verify: ThirdPartyInviteVerifier | None,
) -> None:
    """Rule .4.1: an invite that redeems a third-party invite."""
    if membership_of(auth_state, target) == BAN:
        raise AuthError("target user is banned")  # .1
    tpi = event.content["third_party_invite"]
    signed = tpi.get("signed") if isinstance(tpi, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed object")  # .2
    mxid = signed.get("mxid")
    token = signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed lacks mxid or token")  # .3
    if mxid != target:
        raise AuthError("third_party_invite mxid does not match the state_key")  # .4
    invite = auth_state.get((THIRD_PARTY_INVITE, token))
    if invite is None:
        raise AuthError("no m.room.third_party_invite for the token")  # .5
    if invite.sender != event.sender:
        raise AuthError("sender did not send the third party invite")  # .6
    if verify is None:
        verify = verify_third_party_signed  # pure: the keys are in the event itself
    if not verify(signed, _public_keys(invite.content)):  # .7
        raise AuthError("third party invite signature does not verify")  # .8


def _public_keys(content: Mapping[str, Any]) -> list[str]:
    """The keys of an ``m.room.third_party_invite``: ``public_key`` and ``public_keys``."""
    keys: list[str] = []
    single = content.get("public_key")
    if isinstance(single, str):
        keys.append(single)
    many = content.get("public_keys")
    if isinstance(many, list):
        for entry in many:
            key = entry.get("public_key") if isinstance(entry, dict) else None
            if isinstance(key, str):
                keys.append(key)
    return keys


def _check_leave(event: Event, target: str, auth_state: Mapping[Key, Event], create: Event) -> None:
    """Rule .5: leaves, kicks and unbans."""
    sender = event.sender
    current = membership_of(auth_state, target)
    if sender == target:  # .5.1 (leaving a knock: v7+)
        if current == INVITE or current == JOIN:
            return
        if current == KNOCK and event.room_version.knock:
            return
        raise AuthError("cannot leave a room one is not in, invited to or knocking on")
    if membership_of(auth_state, sender) != JOIN:
        raise AuthError("sender is not joined to the room")  # .5.2
    power_levels = auth_state.get(POWER_LEVELS_KEY)
    sender_level = user_power_level(sender, power_levels, create)
    if current == BAN and sender_level < ban_level(power_levels):
        raise AuthError("sender's power level is below the ban level")  # .5.3
    if sender_level >= kick_level(power_levels):  # .5.4
        if user_power_level(target, power_levels, create) < sender_level:
            return
    raise AuthError("sender cannot kick this user")  # .5.5


def _check_ban(event: Event, target: str, auth_state: Mapping[Key, Event], create: Event) -> None:
    """Rule .6: bans."""
    sender = event.sender
    if membership_of(auth_state, sender) != JOIN:
        raise AuthError("sender is not joined to the room")  # .6.1
    power_levels = auth_state.get(POWER_LEVELS_KEY)
    sender_level = user_power_level(sender, power_levels, create)
    if sender_level >= ban_level(power_levels):  # .6.2
        if user_power_level(target, power_levels, create) < sender_level:
            return
    raise AuthError("sender cannot ban this user")  # .6.3


def _check_knock(event: Event, target: str, auth_state: Mapping[Key, Event]) -> None:
    """Rule .7: knocks."""
    rule = join_rule_of(auth_state)
    if not (rule == KNOCK or (rule == KNOCK_RESTRICTED and event.room_version.knock_restricted)):
        raise AuthError("the join rule does not allow knocking")  # .7.1
    if event.sender != target:
        raise AuthError("cannot knock on behalf of another user")  # .7.2
    current = membership_of(auth_state, target)
    if current == BAN or current == INVITE or current == JOIN:
        raise AuthError("banned, invited or joined users cannot knock")  # .7.4
