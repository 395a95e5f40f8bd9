"""Signing JSON, content hashes, reference hashes, event ids and event signatures.

Spec: appendices "Signing JSON" / "Checking for a Signature"; server-server
"Signing Events" ("Adding hashes and signatures to outgoing events",
"Validating hashes and signatures on received events", "Calculating the
reference hash for an event", "Calculating the content hash for an event");
rooms v1 / v3 / v4+ "Event IDs"; rooms v12 room ids.

Everything here runs once or more per event, so the functions build shallow
filtered copies rather than deep copies, and never mutate their inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from homeserver.events.canonical import decode_base64, encode_base64, encode_canonical_json
from homeserver.events.keys import ALGORITHM, SigningKey
from homeserver.events.redaction import redact
from homeserver.events.room_versions import (
    EVENT_ID_HASH_URLSAFE,
    EVENT_ID_SERVER_GENERATED,
    RoomVersion,
)

_NOT_SIGNED = frozenset({"signatures", "unsigned"})
_NOT_CONTENT_HASHED = frozenset({"signatures", "unsigned", "hashes"})


class SignatureError(Exception):
    """A signature is missing, malformed or does not verify; ``reason`` says which."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- Signing JSON (appendices) ---------------------------------------------------------------


def _signable_bytes(obj: dict[str, Any]) -> bytes:
    """Canonical JSON of ``obj`` without ``signatures`` and ``unsigned`` ("Signing Details")."""
    return encode_canonical_json({k: v for k, v in obj.items() if k not in _NOT_SIGNED})


def _with_signature(
    obj: dict[str, Any], server_name: str, key_id: str, signature: str
) -> dict[str, Any]:
    """A shallow copy of ``obj`` with one signature merged into ``signatures``.

    Existing signatures (other servers', other keys) are kept: a join event
    carries both the joining and the resident server's signatures.
    """
    old = obj.get("signatures")
    signatures = {name: dict(sigs) for name, sigs in old.items()} if isinstance(old, dict) else {}
    signatures.setdefault(server_name, {})[key_id] = signature
    signed = dict(obj)
    signed["signatures"] = signatures
    return signed


def sign_json(obj: dict[str, Any], server_name: str, key: SigningKey) -> dict[str, Any]:
    """Return ``obj`` signed by ``server_name`` (appendices "Signing Details").

    ``signatures`` and ``unsigned`` are not covered by the signature and are
    carried over unchanged; ``obj`` itself is not modified.
    """
    signature = encode_base64(key.sign(_signable_bytes(obj)))
    return _with_signature(obj, server_name, key.key_id, signature)


def verify_json_signature(
    obj: dict[str, Any],
    server_name: str,
    key_id: str,
    verify_key: VerifyKey,
    signable: bytes | None = None,
) -> None:
    """Check ``server_name``'s signature with ``key_id`` (appendices "Checking for a Signature").

    Returns ``None`` when it verifies; raises ``SignatureError`` otherwise.
    Looking up ``verify_key`` (step 3) is the caller's job. ``signable``: the
    bytes the signature covers (``obj`` without ``signatures``/``unsigned``, as
    canonical JSON) when the caller has them already.
    """
    signature = signature_bytes(obj, server_name, key_id)
    try:
        verify_key.verify(_signable_bytes(obj) if signable is None else signable, signature)
    except (BadSignatureError, ValueError):
        # nacl raises ValueError for a signature of the wrong length.
        raise SignatureError(f"bad signature from {server_name} with key {key_id}") from None


def signature_of(obj: dict[str, Any], server_name: str, key_id: str) -> str:
    """The base64 signature ``server_name`` put in ``obj`` with ``key_id``; raises
    ``SignatureError`` when there is none."""
    if not key_id.startswith(ALGORITHM + ":"):
        raise SignatureError(f"unsupported signing algorithm in key id {key_id!r}")
    signatures = obj.get("signatures")
    if not isinstance(signatures, dict):
        raise SignatureError("no signatures")
    server_signatures = signatures.get(server_name)
    if not isinstance(server_signatures, dict):
        raise SignatureError(f"not signed by {server_name}")
    signature_b64 = server_signatures.get(key_id)
    if not isinstance(signature_b64, str):
        raise SignatureError(f"no signature from {server_name} with key {key_id}")
    return signature_b64


def signature_bytes(obj: dict[str, Any], server_name: str, key_id: str) -> bytes:
    """``signature_of``, decoded; ``SignatureError`` when it is not base64."""
    signature_b64 = signature_of(obj, server_name, key_id)
    try:
        return decode_base64(signature_b64)
    except ValueError:
        raise SignatureError(f"signature from {server_name} is not valid base64") from None


# --- Content hash (server-server "Calculating the content hash for an event") -----------------


def _content_hash_bytes(pdu: dict[str, Any]) -> bytes:
    return hashlib.sha256(
        encode_canonical_json({k: v for k, v in pdu.items() if k not in _NOT_CONTENT_HASHED})
    ).digest()


def compute_content_hash(pdu: dict[str, Any]) -> str:
    """SHA-256 of the full event minus ``unsigned``/``signatures``/``hashes``, unpadded base64.

    Covers the unredacted content, so a receiver can tell it was given a
    redacted copy ("Calculating the content hash for an event").
    """
    return encode_base64(_content_hash_bytes(pdu))


def add_content_hash(pdu: dict[str, Any]) -> dict[str, Any]:
    """Return a copy of ``pdu`` with ``hashes.sha256`` set ("Adding hashes and signatures")."""
    hashed = dict(pdu)
    old = pdu.get("hashes")
    hashes = dict(old) if isinstance(old, dict) else {}
    hashes["sha256"] = compute_content_hash(pdu)
    hashed["hashes"] = hashes
    return hashed


def check_content_hash(pdu: dict[str, Any]) -> bool:
    """Does ``hashes.sha256`` match the content? ("Validating hashes and signatures").

    False means the caller must use the redacted copy of the event instead.
    """
    hashes = pdu.get("hashes")
    claimed = hashes.get("sha256") if isinstance(hashes, dict) else None
    if not isinstance(claimed, str):
        return False
    try:
        return decode_base64(claimed) == _content_hash_bytes(pdu)
    except ValueError:
        return False


# --- Reference hash and ids (server-server "Calculating the reference hash for an event") -----


def event_signable_bytes(pdu: dict[str, Any], room_version: RoomVersion) -> bytes:
    """Canonical JSON of the redacted event without ``signatures``/``unsigned``: what an
    event signature covers and what the reference hash hashes (the same bytes)."""
    return _signable_bytes(redact(pdu, room_version))


def compute_reference_hash(pdu: dict[str, Any], room_version: RoomVersion) -> bytes:
    """SHA-256 of the redacted event without ``signatures``/``unsigned`` (raw digest)."""
    return hashlib.sha256(event_signable_bytes(pdu, room_version)).digest()


def compute_event_id(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """The event's id under its room version's event id format.

    v4+: ``$`` + URL-safe unpadded base64 of the reference hash (v4-event-ids);
    v3: the same in standard base64 (v3 "Event IDs"); v1-v2: the id the
    sending server chose, carried in the PDU's ``event_id`` (v1-event-ids).
    Raises ``ValueError`` when a v1/v2 PDU carries no string ``event_id``.
    """
    if room_version.event_id_format == EVENT_ID_SERVER_GENERATED:
        return event_id_from_signable(pdu, b"", room_version)
    return event_id_from_signable(pdu, event_signable_bytes(pdu, room_version), room_version)


def event_id_from_signable(pdu: dict[str, Any], signable: bytes, room_version: RoomVersion) -> str:
    """``compute_event_id`` given the event's ``event_signable_bytes`` (unused in v1-v2)."""
    if room_version.event_id_format == EVENT_ID_SERVER_GENERATED:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise ValueError("a room version 1/2 event carries its event_id")
        return event_id
    urlsafe = room_version.event_id_format == EVENT_ID_HASH_URLSAFE
    return "$" + encode_base64(hashlib.sha256(signable).digest(), urlsafe=urlsafe)


def reference_hash_entry(pdu: dict[str, Any], room_version: RoomVersion) -> dict[str, str]:
    """``{"sha256": ...}``, the hash half of a v1/v2 ``prev_events``/``auth_events`` pair."""
    return {"sha256": encode_base64(compute_reference_hash(pdu, room_version))}


def room_id_for_create_event(pdu: dict[str, Any], room_version: RoomVersion) -> str:
    """Room v12: the room id is the create event's id with ``!`` for ``$`` (appendices "Room IDs").

    Raises ``ValueError`` for other event types or room versions that carry
    an explicit room id.
    """
    if not room_version.room_id_from_create_event:
        raise ValueError(f"room version {room_version.identifier} does not derive room ids")
    if pdu.get("type") != "m.room.create":
        raise ValueError("only an m.room.create event names a room")
    return "!" + encode_base64(compute_reference_hash(pdu, room_version), urlsafe=True)


# --- Event signatures (server-server "Signing Events") ----------------------------------------


def sign_event(
    pdu: dict[str, Any], server_name: str, key: SigningKey, room_version: RoomVersion
) -> dict[str, Any]:
    """Return ``pdu`` with our signature over its redacted form ("Adding hashes and signatures").

    The content hash must already be present (``add_content_hash``): the
    signature covers ``hashes``, which in turn covers the full content.
    """
    return sign_signable(pdu, event_signable_bytes(pdu, room_version), server_name, key)[0]


def sign_signable(
    pdu: dict[str, Any], signable: bytes, server_name: str, key: SigningKey
) -> tuple[dict[str, Any], str]:
    """``sign_event`` given the event's ``event_signable_bytes``; also the signature."""
    signature = encode_base64(key.sign(signable))
    return _with_signature(pdu, server_name, key.key_id, signature), signature


def verify_event_signature(
    pdu: dict[str, Any],
    room_version: RoomVersion,
    server_name: str,
    key_id: str,
    verify_key: VerifyKey,
) -> None:
    """Check one server's signature on the redacted event ("Validating hashes and signatures").

    Works whether we hold the full event or a redacted copy. Which servers
    must sign, and which keys are unexpired, is the caller's policy.
    Raises ``SignatureError``.
    """
    verify_json_signature(redact(pdu, room_version), server_name, key_id, verify_key)


# --- Third-party invites (rooms "Authorization rules", m.room.member invite 1.7) ------------


def _verify_key_from_base64(text: str) -> VerifyKey | None:
    """An identity server's ed25519 public key (unpadded base64, standard or URL-safe)."""
    for candidate in (text, text.replace("-", "+").replace("_", "/")):
        try:
            raw = decode_base64(candidate)
        except ValueError:
            continue
        if len(raw) == 32:
            return VerifyKey(raw)
    return None


def verify_third_party_signed(signed: Mapping[str, Any], public_keys: Sequence[str]) -> bool:
    """Does any signature in ``signed`` verify with any of ``public_keys``?

    The auth rule for an invite redeeming a third-party invite: the ``signed``
    object is signed by the identity server with one of the keys it published in
    the ``m.room.third_party_invite`` event. Key ids are not matched: an identity
    server may sign with an ephemeral key published under another name.
    """
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        return False
    keys = [k for k in (_verify_key_from_base64(p) for p in public_keys) if k is not None]
    message = _signable_bytes(dict(signed))
    for by_key in signatures.values():
        if not isinstance(by_key, dict):
            continue
        for key_id, sig_b64 in by_key.items():
            if not isinstance(key_id, str) or not key_id.startswith(ALGORITHM + ":"):
                continue
            if not isinstance(sig_b64, str):
                continue
            try:
                signature = decode_base64(sig_b64)
            except ValueError:
                continue
            for key in keys:
                try:
                    key.verify(message, signature)
                    return True
                except (BadSignatureError, ValueError):
                    continue
    return False
