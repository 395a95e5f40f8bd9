"""What an event's checks and storage derive from its PDU, each worked out once.

Design note
-----------
A PDU goes through several steps that each need a byte form of it: building
(content hash, signature, event id), the checks on receipt (size, content hash,
signatures) and storage (its canonical JSON text). Three of those are the same
bytes: the signature and the reference hash (the event id) both cover the
redacted event without ``signatures``/``unsigned``; the size check and the
stored text are both the canonical JSON of the whole PDU. ``Event.derived``
keeps such results for the event's life, so each is computed once.

An event this server built (``mark_built``) also keeps the content hash it just
computed and the signature it just made with its own key over exactly those
bytes: checking them again (re-hashing, verifying our own ed25519 signature)
could only repeat that computation. The checks still run for such an event
(DESIGN "One way in for every event": format, auth against its auth events and
the state before it); only these re-derivations are answered from what we
computed. A signature is trusted this way only when the PDU still carries the
very signature we made and the key asked about is the one we made it with;
anything else (a copy signed by another server, an event parsed from the
network, a PDU changed since) is verified in full.

The PDU is never mutated once its event id is computed (``model.Event``), which
is what makes these results stay true.
"""

from __future__ import annotations

from nacl.signing import VerifyKey

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.model import Derived, Event
from homeserver.events.signing import (
    SignatureError,
    check_content_hash,
    event_signable_bytes,
    signature_of,
    verify_json_signature,
)


def _derived(event: Event) -> Derived:
    d = event.derived
    if d is None:
        d = event.derived = Derived()
    return d


def mark_built(
    event: Event, signable: bytes, server_name: str, key_id: str, signature: str, key: VerifyKey
) -> None:
    """``event`` was just built here: its content hash computed, and ``signature`` made
    by ``server_name``'s ``key_id`` (whose public half is ``key``) over ``signable``."""
    d = _derived(event)
    d.signable = signable
    d.content_hash_ok = True
    d.signed_by_us = (server_name, key_id, signature, key.encode())


def keep(
    event: Event,
    *,
    canonical: bytes | None = None,
    signable: bytes | None = None,
    content_hash_ok: bool | None = None,
) -> None:
    """Keep what a receiver worked out from ``event``'s very PDU while checking it."""
    d = _derived(event)
    d.canonical = canonical if canonical is not None else d.canonical
    d.signable = signable if signable is not None else d.signable
    d.content_hash_ok = content_hash_ok if content_hash_ok is not None else d.content_hash_ok


def canonical_json(event: Event) -> bytes:
    """Canonical JSON of the whole PDU (``encode_canonical_json``, whose errors it raises)."""
    d = _derived(event)
    if d.canonical is None:
        d.canonical = encode_canonical_json(event.pdu)
    return d.canonical


def signable_bytes(event: Event) -> bytes:
    """``signing.event_signable_bytes`` of the PDU: what its signatures and event id cover."""
    d = _derived(event)
    if d.signable is None:
        d.signable = event_signable_bytes(event.pdu, event.room_version)
    return d.signable


def content_hash_ok(event: Event) -> bool:
    """``signing.check_content_hash`` of the PDU."""
    d = _derived(event)
    if d.content_hash_ok is None:
        d.content_hash_ok = check_content_hash(event.pdu)
    return d.content_hash_ok


def verify_signature(event: Event, server_name: str, key_id: str, verify_key: VerifyKey) -> None:
    """``signing.verify_event_signature``: raises ``SignatureError`` unless ``server_name``'s
    ``key_id`` signature on the event verifies with ``verify_key``."""
    d = event.derived
    ours = d.signed_by_us if d is not None else None
    if ours is not None and ours[:2] == (server_name, key_id):
        try:
            carried = signature_of(event.pdu, server_name, key_id)
        except SignatureError:
            carried = None
        if carried == ours[2] and verify_key.encode() == ours[3]:
            return  # the signature we made over these very bytes with this key
    try:
        signable = signable_bytes(event)
    except (ValueError, RecursionError):
        # No canonical form (the format check rejects such an event first).
        raise SignatureError("the event has no canonical JSON form") from None
    verify_json_signature(event.pdu, server_name, key_id, verify_key, signable)


def forget(event: Event) -> None:
    """Drop the byte forms (the event is stored; a cached copy need not hold them)."""
    event.derived = None
