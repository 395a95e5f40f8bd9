"""Room versions 1-9 in the events core: the version table, event id formats,
redaction algorithms, the v1/v2 event format, and format checks per version.

Vectors: appendices "Cryptographic Test Vectors" (their events carry
``event_id: $0:domain``, the room version 1 format).
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.builder import build_event
from homeserver.events.canonical import decode_base64, encode_base64
from homeserver.events.keys import SigningKey
from homeserver.events.redaction import redact
from homeserver.events.room_versions import (
    KNOWN_ROOM_VERSIONS,
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    RoomVersion,
)
from homeserver.events.signing import (
    add_content_hash,
    check_content_hash,
    compute_event_id,
    compute_reference_hash,
    reference_hash_entry,
    sign_event,
    verify_event_signature,
)
from homeserver.events.validate import PduFormatError, check_pdu_format

from .conftest import KEY_ID, SERVER_NAME, SIGNING_KEY_SEED_B64
from .test_signing import (
    MINIMAL_REFERENCE_JSON,
    SIGNED_MINIMAL_EVENT,
    SIGNED_REDACTABLE_EVENT,
    minimal_event,
    redactable_event,
)

ALL = [KNOWN_ROOM_VERSIONS[str(n)] for n in range(1, 13)]
HASH_ID_VERSIONS = [V3, V4, V5, V6, V7, V8, V9, V10]


def key() -> SigningKey:
    return SigningKey("1", decode_base64(SIGNING_KEY_SEED_B64))


# --- the table ---------------------------------------------------------------------------


def test_every_version_1_to_12_is_known_and_stable() -> None:
    assert list(KNOWN_ROOM_VERSIONS) == [str(n) for n in range(1, 13)]
    assert all(v.stable for v in ALL)


def _first_version_with(flag: str) -> list[str]:
    return [v.identifier for v in ALL if getattr(v, flag)]


@pytest.mark.parametrize(
    ("flag", "versions"),
    [
        # Each row: the rooms pages that introduce (or drop) the behaviour.
        ("event_id_in_pdu", ["1", "2"]),
        ("redaction_auth_rule", ["1", "2"]),
        ("special_case_aliases_auth", ["1", "2", "3", "4", "5"]),
        ("floaty_power_levels", ["1", "2", "3", "4", "5"]),
        ("enforce_key_validity", [str(n) for n in range(5, 13)]),
        ("strict_canonical_json", [str(n) for n in range(6, 13)]),
        ("limit_notifications_power_levels", [str(n) for n in range(6, 13)]),
        ("knock", [str(n) for n in range(7, 13)]),
        ("restricted_join", [str(n) for n in range(8, 13)]),
        ("redaction_keeps_authorising_user", [str(n) for n in range(9, 13)]),
        ("strict_integer_power_levels", ["10", "11", "12"]),
        ("knock_restricted", ["10", "11", "12"]),
        ("implicit_room_creator", ["11", "12"]),
        ("updated_redaction_rules", ["11", "12"]),
        ("room_id_from_create_event", ["12"]),
    ],
)
def test_version_table_rows(flag: str, versions: list[str]) -> None:
    assert _first_version_with(flag) == versions


def test_state_resolution_algorithm_per_version() -> None:
    assert [v.state_res for v in ALL] == [1] + [2] * 10 + [21]


# --- event ids ---------------------------------------------------------------------------


def test_v1_v2_event_id_is_the_pdus_own() -> None:
    for rv in (V1, V2):
        assert compute_event_id(SIGNED_REDACTABLE_EVENT, rv) == "$0:domain"
        with pytest.raises(ValueError):
            compute_event_id(SIGNED_MINIMAL_EVENT, rv)  # no event_id in it


def test_v3_event_id_is_standard_base64_of_the_reference_hash() -> None:
    digest = hashlib.sha256(MINIMAL_REFERENCE_JSON).digest()
    assert compute_event_id(SIGNED_MINIMAL_EVENT, V3) == "$" + encode_base64(digest)
    for rv in (V4, V5, V6, V7, V8, V9, V10):
        assert compute_event_id(SIGNED_MINIMAL_EVENT, rv) == "$" + encode_base64(
            digest, urlsafe=True
        )


def test_v3_and_v4_ids_differ_only_in_alphabet() -> None:
    ids = {d: compute_event_id(dict(SIGNED_MINIMAL_EVENT, depth=d), V3) for d in range(64)}
    assert any("+" in i or "/" in i for i in ids.values())
    for depth, v3_id in ids.items():
        v4_id = compute_event_id(dict(SIGNED_MINIMAL_EVENT, depth=depth), V4)
        assert v4_id == v3_id.replace("+", "-").replace("/", "_")


# --- the spec's signing vectors hold in every version before 11 -----------------------------


@pytest.mark.parametrize("rv", [V1, V2, *HASH_ID_VERSIONS], ids=lambda v: v.identifier)
def test_minimal_event_vector_in_versions_before_11(rv: RoomVersion) -> None:
    signed = sign_event(add_content_hash(minimal_event()), SERVER_NAME, key(), rv)
    assert signed == SIGNED_MINIMAL_EVENT
    verify_event_signature(signed, rv, SERVER_NAME, KEY_ID, key().verify_key)
    redactable = sign_event(add_content_hash(redactable_event()), SERVER_NAME, key(), rv)
    assert redactable == SIGNED_REDACTABLE_EVENT


# --- redaction ---------------------------------------------------------------------------


def _content_after_redaction(rv: RoomVersion, event_type: str, content: dict[str, Any]) -> Any:
    pdu = {"type": event_type, "content": content, "room_id": "!r:x", "sender": "@a:x"}
    return redact(pdu, rv)["content"]


def test_aliases_content_survives_only_v1_to_v5() -> None:
    for rv in ALL:
        got = _content_after_redaction(rv, "m.room.aliases", {"aliases": ["#a:x"], "x": 1})
        expected = {"aliases": ["#a:x"]} if rv.identifier in "1 2 3 4 5".split() else {}
        assert got == expected, rv.identifier


def test_join_rules_allow_survives_from_v8() -> None:
    content = {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}
    for rv in ALL:
        got = _content_after_redaction(rv, "m.room.join_rules", content)
        if int(rv.identifier) >= 8:
            assert got == {"join_rule": "restricted", "allow": content["allow"]}
        else:
            assert got == {"join_rule": "restricted"}, rv.identifier


def test_authorising_user_survives_from_v9() -> None:
    content = {"membership": "join", "join_authorised_via_users_server": "@a:x", "x": 1}
    for rv in ALL:
        got = _content_after_redaction(rv, "m.room.member", content)
        if int(rv.identifier) >= 9:
            assert got == {"membership": "join", "join_authorised_via_users_server": "@a:x"}
        else:
            assert got == {"membership": "join"}, rv.identifier


def test_create_and_power_levels_before_v11() -> None:
    create = {"creator": "@a:x", "room_version": "1", "m.federate": False}
    levels = {"ban": 50, "invite": 0, "notifications": {"room": 50}, "users": {}}
    for rv in ALL[:10]:
        assert _content_after_redaction(rv, "m.room.create", create) == {"creator": "@a:x"}
        assert _content_after_redaction(rv, "m.room.power_levels", levels) == {
            "ban": 50,
            "users": {},
        }
        assert _content_after_redaction(
            rv, "m.room.history_visibility", {"history_visibility": "shared", "x": 1}
        ) == {"history_visibility": "shared"}


# --- the v1/v2 event format --------------------------------------------------------------


def _v1_parent(rv: RoomVersion) -> dict[str, Any]:
    return sign_event(
        add_content_hash(
            {
                "event_id": "$parent:domain",
                "type": "m.room.create",
                "state_key": "",
                "sender": "@alice:domain",
                "room_id": "!room:domain",
                "content": {"creator": "@alice:domain"},
                "prev_events": [],
                "auth_events": [],
                "depth": 1,
                "origin_server_ts": 1,
            }
        ),
        SERVER_NAME,
        key(),
        rv,
    )


def _fields(cited: str) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "sender": "@alice:domain",
        "room_id": "!room:domain",
        "content": {"body": "hello"},
        "prev_events": [cited],
        "auth_events": [cited],
        "depth": 2,
        "origin_server_ts": 1700000000000,
    }


@pytest.mark.parametrize("rv", [V1, V2], ids=lambda v: v.identifier)
def test_v1_build_names_the_event_and_pairs_references(rv: RoomVersion) -> None:
    parent = _v1_parent(rv)
    refs = {"$parent:domain": reference_hash_entry(parent, rv)}
    event = build_event(
        rv, _fields("$parent:domain"), SERVER_NAME, key(), references=refs, event_id="$a:domain"
    )
    assert event.event_id == "$a:domain"
    assert event.pdu["event_id"] == event.event_id
    expected_hash = encode_base64(compute_reference_hash(parent, rv))
    assert event.pdu["prev_events"] == [["$parent:domain", {"sha256": expected_hash}]]
    assert event.pdu["auth_events"] == event.pdu["prev_events"]
    assert event.prev_event_ids == ["$parent:domain"] == event.auth_event_ids
    check_pdu_format(event.pdu, rv)
    assert check_content_hash(event.pdu)
    verify_event_signature(event.pdu, rv, SERVER_NAME, KEY_ID, key().verify_key)
    assert compute_event_id(event.pdu, rv) == event.event_id
    # The id is the caller's choice, and part of what is signed and hashed.
    again = build_event(
        rv, _fields("$parent:domain"), SERVER_NAME, key(), references=refs, event_id="$b:domain"
    )
    assert again.event_id == "$b:domain"
    assert again.pdu["signatures"] != event.pdu["signatures"]


def test_v1_build_needs_an_id_of_ours_and_every_cited_reference() -> None:
    with pytest.raises(ValueError):
        build_event(V1, _fields("$parent:domain"), SERVER_NAME, key(), event_id="$a:domain")
    refs = {"$parent:domain": {"sha256": "abc"}}
    for bad_id in (None, "$a:elsewhere"):
        with pytest.raises(ValueError):
            build_event(
                V1, _fields("$parent:domain"), SERVER_NAME, key(), references=refs, event_id=bad_id
            )


def test_v1_build_keeps_pairs_from_a_template() -> None:
    fields = _fields("$x:domain")
    pair = ["$parent:remote", {"sha256": "abc"}]
    fields["prev_events"] = [pair]
    fields["auth_events"] = [pair]
    event = build_event(V1, fields, SERVER_NAME, key(), event_id="$a:domain")
    assert event.pdu["prev_events"] == [pair]


def test_hash_id_versions_do_not_carry_event_id() -> None:
    for rv in (V3, V4, V9):
        event = build_event(rv, _fields("$" + "A" * 43), SERVER_NAME, key())
        assert "event_id" not in event.pdu


# --- format checks -----------------------------------------------------------------------


def _v1_pdu() -> dict[str, Any]:
    pair = ["$prev:domain", {"sha256": "abc"}]
    return {
        "event_id": "$ev:domain",
        "type": "m.room.message",
        "room_id": "!room:domain",
        "sender": "@alice:domain",
        "content": {"body": "hi"},
        "depth": 7,
        "origin_server_ts": 1700000000000,
        "prev_events": [pair],
        "auth_events": [pair],
        "hashes": {"sha256": "abc"},
        "signatures": {"domain": {"ed25519:a": "sig"}},
    }


def _reason(pdu: dict[str, Any], rv: RoomVersion) -> str:
    with pytest.raises(PduFormatError) as info:
        check_pdu_format(pdu, rv)
    return info.value.reason


def test_v1_format_refusals() -> None:
    check_pdu_format(_v1_pdu(), V1)
    no_id = _v1_pdu()
    del no_id["event_id"]
    assert _reason(no_id, V2) == "missing key: event_id"
    bad_id = dict(_v1_pdu(), event_id="$" + "A" * 43)
    assert _reason(bad_id, V1) == "event_id: not a valid event id"
    plain = dict(_v1_pdu(), prev_events=["$prev:domain"])
    assert _reason(plain, V1) == "prev_events: entry is not an [event_id, hashes] pair"
    # Synapse sends {} for hashes it cannot compute: accepted; a non-object is not.
    check_pdu_format(dict(_v1_pdu(), auth_events=[["$prev:domain", {}]]), V1)
    bad_hash = dict(_v1_pdu(), auth_events=[["$prev:domain", "abc"]])
    assert _reason(bad_hash, V1) == "auth_events: entry's reference hashes are not an object"
    bad_sha = dict(_v1_pdu(), auth_events=[["$prev:domain", {"sha256": 5}]])
    assert _reason(bad_sha, V1) == "auth_events: entry's reference hashes are not an object"
    # A v1 pdu is not a v3+ one.
    assert _reason(_v1_pdu(), V3) == "auth_events: entry is not a string"


def test_v3_format_takes_standard_base64_ids_only() -> None:
    pdu = _v1_pdu()
    del pdu["event_id"]
    pdu["prev_events"] = ["$" + "a+/" * 14 + "b"]
    pdu["auth_events"] = []
    check_pdu_format(pdu, V3)
    assert _reason(pdu, V4) == "prev_events: entry is not a valid event id"


def test_canonical_json_is_enforced_from_v6() -> None:
    pdu = _v1_pdu()
    del pdu["event_id"]
    pdu["prev_events"] = pdu["auth_events"] = []
    pdu["content"] = {"n": 1.5}
    for rv in (V3, V4, V5):
        check_pdu_format(pdu, rv)
    for rv in (V6, V7, V8, V9, V10):
        assert _reason(pdu, rv) == "non-canonical JSON: floats are not allowed"
    infinite = dict(pdu, content={"n": float("inf")})  # "1e400" on the wire
    for rv in (V3, V5):
        assert _reason(infinite, rv) == "non-canonical JSON: number out of range"
    assert _reason(infinite, V6) == "non-canonical JSON: floats are not allowed"
    deep = dict(pdu, content={}, depth=2**60)
    check_pdu_format(deep, V5)
    assert _reason(deep, V6) == "depth: out of range"


# --- properties --------------------------------------------------------------------------

_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=60, deadline=None)
@given(
    rv=st.sampled_from(ALL[:11]),
    body=_text,
    depth=st.integers(min_value=1, max_value=2**40),
)
def test_built_events_keep_their_id_through_redaction(
    rv: RoomVersion, body: str, depth: int
) -> None:
    """Whatever the version, the event id computed back from the PDU, or from
    its redacted form, is the id the builder gave; the signature still verifies."""
    fields = _fields("$parent:domain" if rv.event_id_in_pdu else "$" + "A" * 43)
    fields["content"] = {"body": body}
    fields["depth"] = depth
    refs = {"$parent:domain": {"sha256": "abc"}}
    event = build_event(
        rv, copy.deepcopy(fields), SERVER_NAME, key(), references=refs, event_id="$p:domain"
    )
    redacted = redact(event.pdu, rv)
    assert compute_event_id(event.pdu, rv) == event.event_id
    assert compute_event_id(redacted, rv) == event.event_id
    verify_event_signature(redacted, rv, SERVER_NAME, KEY_ID, key().verify_key)
    check_pdu_format(event.pdu, rv)
