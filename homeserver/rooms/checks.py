"""The checks every event passes before it is persisted, local or remote.

Spec: server-server "Checks performed on receipt of a PDU". DESIGN rule 2:
there is no shortcut for our own events; RoomService runs this on the
events it builds, and the federation receiver will run it on received PDUs.

1. format (``check_pdu_format``): invalid events are dropped;
2. signatures of the sender's server: failure drops the event;
3. content hash: a mismatch means the event is to be stored redacted;
4. auth rules against the event's own auth events (rejects);
5. auth rules against the state before the event (rejects);
6. auth rules against the current state (soft-fails).

Steps 5 and 6 are the same for an event built on the current extremities
(every local event), so the caller passes the same map for both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass

from nacl.signing import VerifyKey

from homeserver.events.derived import canonical_json, content_hash_ok, verify_signature
from homeserver.events.model import Event
from homeserver.events.signing import SignatureError
from homeserver.events.validate import PduFormatError, check_pdu_format
from homeserver.rooms.auth import (
    AuthError,
    ServerSignatureVerifier,
    check_auth,
    check_auth_events_selection,
)
from homeserver.rooms.auth.constants import AUTHORISING_USER, CREATE_KEY, MEMBER
from homeserver.rooms.auth.ids import domain_of

StateKey = tuple[str, str]
# (server_name, key_id) -> the server's public key, or None when unknown.
KeyLookup = Callable[[str, str], Awaitable[VerifyKey | None]]


class EventRejected(Exception):
    """The event fails a check that rejects or drops it. ``step`` names the check."""

    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


@dataclass(frozen=True, slots=True)
class CheckResult:
    # The content hash did not match: store and serve the event redacted.
    redact: bool
    # Set when the event passes its auth events and the state before it but
    # not the current state (step 6): persist it, but never as current state.
    soft_fail_reason: str | None


def _third_party_invite_signer(event: Event) -> str | None:
    """The invited user's server, for an invite redeeming a third-party invite.

    Spec (server-server "Validating hashes and signatures"): for a 3rd party invite
    "the server which actually sends the event may be a different server" than the
    sender's: the invited user's server builds it when it is in the room (its
    "Third-party invites" section). The auth rules then check the identity server's
    signature on ``signed``. Only an intact event qualifies: a redacted copy (bad
    content hash) would lose ``third_party_invite`` before v11 and pass as an ordinary
    invite by a sender whose server never signed it.
    """
    content = event.content
    if (
        event.type != MEMBER
        or content.get("membership") != "invite"
        or not isinstance(content.get("third_party_invite"), dict)
        or not event.state_key
        or not content_hash_ok(event)
    ):
        return None
    return domain_of(event.state_key)


async def check_signatures(event: Event, keys: KeyLookup) -> None:
    """Step 2: the sender's server signed the (redacted) event with a key we know;
    in room versions 1-2 the server named in the event id too (v3-auth-rules note).
    A third-party invite may be signed by the invited user's server instead."""
    invited = _third_party_invite_signer(event)
    if invited is None or not await signed_by(event, invited, keys):
        await _check_server_signature(event, domain_of(event.sender), keys)
    if event.room_version.event_id_in_pdu:
        id_server = domain_of(event.event_id)
        if id_server != domain_of(event.sender):
            await _check_server_signature(event, id_server, keys)


async def _check_server_signature(event: Event, server: str, keys: KeyLookup) -> None:
    sigs = event.pdu.get("signatures", {}).get(server)
    if not isinstance(sigs, dict) or not sigs:
        raise EventRejected("signatures", f"no signature from {server}")
    for key_id in sigs:
        if not key_id.startswith("ed25519:"):
            continue
        verify_key = await keys(server, key_id)
        if verify_key is None:
            continue
        try:
            verify_signature(event, server, key_id, verify_key)
        except SignatureError as e:
            raise EventRejected("signatures", e.reason) from None
        return
    raise EventRejected("signatures", f"no known key of {server} signed the event")


async def signed_by(event: Event, server: str, keys: KeyLookup) -> bool:
    """Whether ``server`` validly signed the (redacted) event with a key we can find
    (appendices "Checking for a Signature")."""
    signatures = event.pdu.get("signatures")
    sigs = signatures.get(server) if isinstance(signatures, dict) else None
    if not isinstance(sigs, dict):
        return False
    for key_id in sigs:
        if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
            continue
        verify_key = await keys(server, key_id)
        if verify_key is None:
            continue
        try:
            verify_signature(event, server, key_id, verify_key)
        except SignatureError:
            return False
        return True
    return False


async def authoriser_signature(event: Event, keys: KeyLookup) -> ServerSignatureVerifier | None:
    """For a membership event naming ``join_authorised_via_users_server``: the auth rules'
    check that the authorising user's server signed it, worked out here because looking
    up keys is I/O and the rules are pure. None when the event names no authoriser."""
    authoriser = event.content.get(AUTHORISING_USER) if event.type == MEMBER else None
    if not isinstance(authoriser, str):
        return None
    server = domain_of(authoriser)
    valid = bool(server) and await signed_by(event, server, keys)

    def verify(checked: Event, server_name: str) -> bool:
        return valid and server_name == server and checked.event_id == event.event_id

    return verify


def _same_events(a: Mapping[StateKey, Event], b: Mapping[StateKey, Event]) -> bool:
    """The same events under the same keys."""
    return a.keys() == b.keys() and all(e.event_id == b[k].event_id for k, e in a.items())


def _with_create(state: Mapping[StateKey, Event], create: Event | None) -> dict[StateKey, Event]:
    out = dict(state)
    if create is not None and CREATE_KEY not in out:
        out[CREATE_KEY] = create
    return out


async def check_event(
    event: Event,
    *,
    auth_events: Sequence[Event],
    state_before: Mapping[StateKey, Event],
    current_state: Mapping[StateKey, Event],
    create_event: Event | None,
    keys: KeyLookup,
    rejected_event_ids: Container[str] = (),
    receipt_checked: bool = False,
) -> CheckResult:
    """Run steps 1-6; raise ``EventRejected`` on 1, 2, 4 and 5.

    ``create_event`` is the room's create event (needed in v12, where it is
    never among the auth events); ``None`` when ``event`` is the create event.
    The state maps need only hold the keys the auth rules read
    (``auth_types_for_event`` and the create event).
    ``receipt_checked``: steps 1-3 already ran on this very PDU (a received one:
    ``federation.pdu.fetch.EventFetcher.check`` runs them on receipt, with the keys
    valid at the event's time, and hands on the redacted form of an event whose
    content hash fails), so they are not run twice.
    """
    redact = False
    if not receipt_checked:
        try:
            check_pdu_format(event.pdu, event.room_version, encoded=lambda: canonical_json(event))
        except PduFormatError as e:
            raise EventRejected("format", e.reason) from None
        await check_signatures(event, keys)
        redact = not content_hash_ok(event)
    verifier = await authoriser_signature(event, keys)
    try:
        check_auth_events_selection(event, auth_events, rejected_event_ids=rejected_event_ids)
        by_key = _with_create({a.state_tuple(): a for a in auth_events}, create_event)
        check_auth(event, by_key, verify_server_signature=verifier)
    except AuthError as e:
        raise EventRejected("auth_events", e.reason) from None
    before = _with_create(state_before, create_event)
    if not _same_events(before, by_key):  # the rules are pure: same input, same answer
        try:
            check_auth(event, before, verify_server_signature=verifier)
        except AuthError as e:
            raise EventRejected("state_before", e.reason) from None
    soft_fail = None
    if current_state is not state_before:
        try:
            check_auth(
                event,
                _with_create(current_state, create_event),
                verify_server_signature=verifier,
            )
        except AuthError as e:
            soft_fail = e.reason
    return CheckResult(redact=redact, soft_fail_reason=soft_fail)
