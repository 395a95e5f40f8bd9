"""Signing JSON, hashes, event ids and event signatures, against the spec's vectors.

Vectors: appendices "Cryptographic Test Vectors". The event vectors predate
room version 11; they match the v10 redaction algorithm (which keeps
``origin``), so they are checked with ``V10``.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
import signedjson.key
import signedjson.sign

from homeserver.events.canonical import encode_base64
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.events.room_versions import V10, V11, V12
from homeserver.events.signing import (
    SignatureError,
    add_content_hash,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    room_id_for_create_event,
    sign_event,
    sign_json,
    verify_event_signature,
    verify_json_signature,
)

from .conftest import KEY_ID, SERVER_NAME

# --- appendices "JSON Signing" --------------------------------------------------------------


def test_sign_empty_object_vector(spec_key: SigningKey) -> None:
    assert sign_json({}, SERVER_NAME, spec_key) == {
        "signatures": {
            "domain": {
                "ed25519:1": "K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/"
                "7Xg4ahLwYGYZzuHGZKM5ZAQ"
            }
        }
    }


def test_sign_data_object_vector(spec_key: SigningKey) -> None:
    assert sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key) == {
        "one": 1,
        "signatures": {
            "domain": {
                "ed25519:1": "KqmLSbO39/Bzb0QIYE82zqLwsA+PDzYIpIRA2sRQ4sL53+sN6/fpNSoqE7BP7vBZ"
                "hG6kYdD13EIMJpvhJI+6Bw"
            }
        },
        "two": "Two",
    }


def test_sign_json_keeps_unsigned_and_other_signatures_and_does_not_mutate(
    spec_key: SigningKey,
) -> None:
    obj = {"one": 1, "unsigned": {"age_ts": 5}, "signatures": {"other.org": {"ed25519:x": "sig"}}}
    before = copy.deepcopy(obj)
    signed = sign_json(obj, SERVER_NAME, spec_key)
    assert obj == before
    assert signed["unsigned"] == {"age_ts": 5}
    assert signed["signatures"]["other.org"] == {"ed25519:x": "sig"}
    # unsigned and other signatures are not covered: same signature as for {"one": 1}.
    assert (
        signed["signatures"]["domain"]
        == sign_json({"one": 1}, "domain", spec_key)["signatures"]["domain"]
    )
    # A second signature from the same server merges instead of replacing.
    other_key = SigningKey("2", bytes(32))
    twice = sign_json(signed, SERVER_NAME, other_key)
    assert set(twice["signatures"]["domain"]) == {"ed25519:1", "ed25519:2"}
    assert set(signed["signatures"]["domain"]) == {"ed25519:1"}


def signedjson_verify_key(key: SigningKey) -> Any:
    """The same public key as signedjson wants it (with .alg and .version)."""
    return signedjson.key.decode_verify_key_bytes(key.key_id, bytes(key.verify_key))


def test_signedjson_verifies_our_signature(spec_key: SigningKey) -> None:
    signed = sign_json({"a": [1, "b"], "unsigned": {"x": 1}}, SERVER_NAME, spec_key)
    signedjson.sign.verify_signed_json(signed, SERVER_NAME, signedjson_verify_key(spec_key))
    signed["a"] = [1, "c"]
    with pytest.raises(signedjson.sign.SignatureVerifyException):
        signedjson.sign.verify_signed_json(signed, SERVER_NAME, signedjson_verify_key(spec_key))


def test_verify_json_signature_accepts_valid(spec_key: SigningKey) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key)
    verify_json_signature(signed, SERVER_NAME, KEY_ID, spec_key.verify_key)
    # Adding unsigned data in transit does not break it.
    signed["unsigned"] = {"age": 10}
    verify_json_signature(signed, SERVER_NAME, KEY_ID, spec_key.verify_key)


@pytest.mark.parametrize(
    ("mutate", "key_id", "reason"),
    [
        (lambda o: o.pop("signatures"), KEY_ID, "no signatures"),
        (lambda o: o.update(signatures={"elsewhere": {}}), KEY_ID, "not signed by domain"),
        (lambda o: None, "ed25519:2", "no signature from domain with key ed25519:2"),
        (lambda o: None, "curve25519:1", "unsupported signing algorithm"),
        (
            lambda o: o["signatures"]["domain"].update({"ed25519:1": "!!"}),
            KEY_ID,
            "not valid base64",
        ),
        (lambda o: o.update(two="Three"), KEY_ID, "bad signature from domain"),
        (
            lambda o: o["signatures"]["domain"].update({"ed25519:1": "AAAA"}),
            KEY_ID,
            "bad signature from domain",
        ),
    ],
)
def test_verify_json_signature_rejects(
    spec_key: SigningKey, mutate: Any, key_id: str, reason: str
) -> None:
    signed = sign_json({"one": 1, "two": "Two"}, SERVER_NAME, spec_key)
    mutate(signed)
    with pytest.raises(SignatureError) as info:
        verify_json_signature(signed, SERVER_NAME, key_id, spec_key.verify_key)
    assert reason in info.value.reason


# --- appendices "Event Signing" -------------------------------------------------------------


def minimal_event() -> dict[str, Any]:
    return {
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "signatures": {},
        "hashes": {},
        "type": "X",
        "content": {},
        "prev_events": [],
        "auth_events": [],
        "depth": 3,
        "unsigned": {"age_ts": 1000000},
    }


SIGNED_MINIMAL_EVENT = {
    "auth_events": [],
    "content": {},
    "depth": 3,
    "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "prev_events": [],
    "room_id": "!x:domain",
    "sender": "@a:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjA"
            "WbOoMszkwsQma+lYAg"
        }
    },
    "type": "X",
    "unsigned": {"age_ts": 1000000},
}


def redactable_event() -> dict[str, Any]:
    return {
        "content": {"body": "Here is the message content"},
        "event_id": "$0:domain",
        "origin": "domain",
        "origin_server_ts": 1000000,
        "type": "m.room.message",
        "room_id": "!r:domain",
        "sender": "@u:domain",
        "signatures": {},
        "unsigned": {"age_ts": 1000000},
    }


SIGNED_REDACTABLE_EVENT = {
    "content": {"body": "Here is the message content"},
    "event_id": "$0:domain",
    "hashes": {"sha256": "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"},
    "origin": "domain",
    "origin_server_ts": 1000000,
    "type": "m.room.message",
    "room_id": "!r:domain",
    "sender": "@u:domain",
    "signatures": {
        "domain": {
            "ed25519:1": "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eY"
            "HYMGCA5McEiVPdhzBA"
        }
    },
    "unsigned": {"age_ts": 1000000},
}


def test_minimal_event_vector(spec_key: SigningKey) -> None:
    event = minimal_event()
    signed = sign_event(add_content_hash(event), SERVER_NAME, spec_key, V10)
    assert signed == SIGNED_MINIMAL_EVENT
    assert event == minimal_event()  # inputs are never mutated


def test_redactable_event_vector(spec_key: SigningKey) -> None:
    signed = sign_event(add_content_hash(redactable_event()), SERVER_NAME, spec_key, V10)
    assert signed == SIGNED_REDACTABLE_EVENT


def test_content_hash_vector_values() -> None:
    assert compute_content_hash(minimal_event()) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"
    assert compute_content_hash(redactable_event()) == "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g"
    # The hash ignores unsigned, signatures and any existing hashes.
    noisy = dict(SIGNED_MINIMAL_EVENT, unsigned={"age": 1}, hashes={"sha256": "x"})
    assert compute_content_hash(noisy) == "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"


def test_check_content_hash() -> None:
    assert check_content_hash(SIGNED_MINIMAL_EVENT)
    assert check_content_hash(SIGNED_REDACTABLE_EVENT)
    # Padded base64 is accepted too.
    padded = dict(
        SIGNED_MINIMAL_EVENT, hashes={"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos="}
    )
    assert check_content_hash(padded)
    # A redacted copy no longer matches: the receiver must keep the redacted form.
    assert not check_content_hash(redact(SIGNED_REDACTABLE_EVENT, V10))
    assert not check_content_hash(dict(SIGNED_MINIMAL_EVENT, content={"extra": 1}))
    assert not check_content_hash({k: v for k, v in SIGNED_MINIMAL_EVENT.items() if k != "hashes"})
    assert not check_content_hash(dict(SIGNED_MINIMAL_EVENT, hashes={"sha256": "!!"}))
    assert not check_content_hash(dict(SIGNED_MINIMAL_EVENT, hashes={"sha256": 5}))
    assert not check_content_hash(dict(SIGNED_MINIMAL_EVENT, hashes=[]))


def test_add_content_hash_keeps_other_algorithms() -> None:
    hashed = add_content_hash(dict(minimal_event(), hashes={"sha512": "zz"}))
    assert hashed["hashes"] == {
        "sha512": "zz",
        "sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos",
    }


# The minimal event's redacted form (v10 keeps "origin"), written out by hand.
MINIMAL_REFERENCE_JSON = (
    b'{"auth_events":[],"content":{},"depth":3,'
    b'"hashes":{"sha256":"5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},'
    b'"origin":"domain","origin_server_ts":1000000,"prev_events":[],'
    b'"room_id":"!x:domain","sender":"@a:domain","type":"X"}'
)
MINIMAL_EVENT_ID_V10 = "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc"


def test_event_id_of_spec_event() -> None:
    digest = hashlib.sha256(MINIMAL_REFERENCE_JSON).digest()
    assert compute_reference_hash(SIGNED_MINIMAL_EVENT, V10) == digest
    assert "$" + encode_base64(digest, urlsafe=True) == MINIMAL_EVENT_ID_V10
    assert compute_event_id(SIGNED_MINIMAL_EVENT, V10) == MINIMAL_EVENT_ID_V10


def test_event_id_ignores_signatures_unsigned_and_redaction() -> None:
    resigned = dict(SIGNED_MINIMAL_EVENT, signatures={}, unsigned={"age": 99})
    assert compute_event_id(resigned, V10) == MINIMAL_EVENT_ID_V10
    assert compute_event_id(redact(SIGNED_MINIMAL_EVENT, V10), V10) == MINIMAL_EVENT_ID_V10
    # v11 also redacts "origin", so the same event has another id there.
    without_origin = MINIMAL_REFERENCE_JSON.replace(b'"origin":"domain",', b"")
    v11_id = "$" + encode_base64(hashlib.sha256(without_origin).digest(), urlsafe=True)
    assert compute_event_id(SIGNED_MINIMAL_EVENT, V11) == v11_id
    assert v11_id != MINIMAL_EVENT_ID_V10


def test_event_id_uses_urlsafe_alphabet() -> None:
    ids = {compute_event_id(dict(SIGNED_MINIMAL_EVENT, depth=d), V11) for d in range(64)}
    assert len(ids) == 64
    assert all(len(i) == 44 and "+" not in i and "/" not in i and "=" not in i for i in ids)
    assert any("-" in i or "_" in i for i in ids)


def test_v11_signs_without_origin(spec_key: SigningKey) -> None:
    signed = sign_event(add_content_hash(minimal_event()), SERVER_NAME, spec_key, V11)
    by_hand = {
        "auth_events": [],
        "content": {},
        "depth": 3,
        "hashes": {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"},
        "origin_server_ts": 1000000,
        "prev_events": [],
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "type": "X",
    }
    assert signed["signatures"] == sign_json(by_hand, SERVER_NAME, spec_key)["signatures"]
    assert signed["signatures"] != SIGNED_MINIMAL_EVENT["signatures"]


@pytest.mark.parametrize("event", [SIGNED_MINIMAL_EVENT, SIGNED_REDACTABLE_EVENT])
def test_verify_event_signature_full_and_redacted(spec_key: SigningKey, event: Any) -> None:
    verify_event_signature(event, V10, SERVER_NAME, KEY_ID, spec_key.verify_key)
    verify_event_signature(redact(event, V10), V10, SERVER_NAME, KEY_ID, spec_key.verify_key)
    signedjson.sign.verify_signed_json(
        redact(event, V10), SERVER_NAME, signedjson_verify_key(spec_key)
    )


def test_verify_event_signature_rejects_tampering(spec_key: SigningKey) -> None:
    # Changing redactable content keeps the signature valid; the hash check catches it.
    edited = dict(SIGNED_REDACTABLE_EVENT, content={"body": "forged"})
    verify_event_signature(edited, V10, SERVER_NAME, KEY_ID, spec_key.verify_key)
    assert not check_content_hash(edited)
    # Changing a protected key breaks the signature.
    moved = dict(SIGNED_MINIMAL_EVENT, depth=4)
    with pytest.raises(SignatureError, match="bad signature"):
        verify_event_signature(moved, V10, SERVER_NAME, KEY_ID, spec_key.verify_key)
    # The v10 vector does not verify under v11's redaction rules (origin is dropped).
    with pytest.raises(SignatureError, match="bad signature"):
        verify_event_signature(SIGNED_MINIMAL_EVENT, V11, SERVER_NAME, KEY_ID, spec_key.verify_key)


# --- room version 12 room ids -----------------------------------------------------------------


def v12_create_event() -> dict[str, Any]:
    return {
        "type": "m.room.create",
        "state_key": "",
        "sender": "@creator:domain",
        "content": {"room_version": "12", "additional_creators": ["@other:elsewhere"]},
        "auth_events": [],
        "prev_events": [],
        "depth": 1,
        "origin_server_ts": 1000000,
        "hashes": {},
        "signatures": {},
    }


def test_room_id_for_v12_create_event(spec_key: SigningKey) -> None:
    signed = sign_event(add_content_hash(v12_create_event()), SERVER_NAME, spec_key, V12)
    reference = redact(signed, V12)
    del reference["signatures"]
    # Create content survives redaction whole, additional_creators included.
    assert reference["content"] == v12_create_event()["content"]
    expected = "!" + encode_base64(
        hashlib.sha256(
            b'{"auth_events":[],"content":{"additional_creators":["@other:elsewhere"],'
            b'"room_version":"12"},"depth":1,"hashes":{"sha256":"'
            + signed["hashes"]["sha256"].encode()
            + b'"},"origin_server_ts":1000000,"prev_events":[],'
            b'"sender":"@creator:domain","state_key":"","type":"m.room.create"}'
        ).digest(),
        urlsafe=True,
    )
    room_id = room_id_for_create_event(signed, V12)
    assert room_id == expected
    event_id = compute_event_id(signed, V12)
    assert room_id == "!" + event_id[1:]
    assert Event(event_id, signed, V12).room_id == room_id


def test_room_id_for_create_event_refuses_other_cases() -> None:
    with pytest.raises(ValueError, match="does not derive"):
        room_id_for_create_event(v12_create_event(), V11)
    with pytest.raises(ValueError, match=r"m\.room\.create"):
        room_id_for_create_event(dict(v12_create_event(), type="m.room.member"), V12)
