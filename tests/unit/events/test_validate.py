"""PDU format checks: every refusal, with its reason (server-server "Checks performed on
receipt of a PDU" step 1, client-server "Size limits", rooms v6+ "Canonical JSON")."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from homeserver.events.canonical import encode_canonical_json
from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.events.validate import (
    MAX_PDU_BYTES,
    PduFormatError,
    check_canonical_json_values,
    check_pdu_format,
)

EVENT_ID = "$" + "A" * 42 + "_"
V12_ROOM_ID = "!" + "B" * 42 + "-"


def pdu(room_version: RoomVersion = V11) -> dict[str, Any]:
    return {
        "type": "m.room.message",
        "room_id": V12_ROOM_ID if room_version is V12 else "!room:example.org",
        "sender": "@alice:example.org",
        "content": {"body": "hi", "n": 1, "ok": True, "none": None},
        "depth": 7,
        "origin_server_ts": 1700000000000,
        "prev_events": [EVENT_ID],
        "auth_events": [EVENT_ID, "$" + "c" * 43],
        "hashes": {"sha256": "abc"},
        "signatures": {"example.org": {"ed25519:a": "sig"}},
        "unsigned": {"age": 3},
    }


def reason_for(event: Any, room_version: RoomVersion) -> str:
    """The reason check_pdu_format gives for refusing ``event`` (fails if it is accepted)."""
    with pytest.raises(PduFormatError) as info:
        check_pdu_format(event, room_version)
    assert str(info.value) == info.value.reason
    return info.value.reason


def v12_create() -> dict[str, Any]:
    event = pdu(V12)
    del event["room_id"]
    event.update(type="m.room.create", state_key="", prev_events=[], auth_events=[], depth=1)
    event["content"] = {"room_version": "12"}
    return event


@pytest.mark.parametrize("room_version", [V10, V11, V12])
def test_valid_pdus_pass(room_version: RoomVersion) -> None:
    check_pdu_format(pdu(room_version), room_version)
    check_pdu_format(dict(pdu(room_version), state_key="", event_id="$0:domain"), room_version)


def test_valid_v12_create_passes_without_room_id() -> None:
    check_pdu_format(v12_create(), V12)


def test_historical_sender_is_accepted() -> None:
    check_pdu_format(dict(pdu(), sender="@Ünïcode Bob!:example.org"), V11)
    check_pdu_format(dict(pdu(), sender="@:example.org"), V11)


def test_limits_are_inclusive() -> None:
    event = pdu()
    event.update(
        type="t" * 255,
        state_key="é" * 127 + "x",  # 255 bytes
        depth=2**53 - 1,
        origin_server_ts=-(2**53) + 1,
        auth_events=[EVENT_ID] * 10,
        prev_events=[EVENT_ID] * 20,
    )
    check_pdu_format(event, V11)


def test_exactly_max_size_passes_one_more_byte_fails() -> None:
    event = pdu()
    event["content"] = {"body": ""}
    base = len(encode_canonical_json(event))
    event["content"]["body"] = "x" * (MAX_PDU_BYTES - base)
    assert len(encode_canonical_json(event)) == MAX_PDU_BYTES
    check_pdu_format(event, V11)
    event["content"]["body"] += "x"
    assert reason_for(event, V11) == f"event is larger than {MAX_PDU_BYTES} bytes"


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda event: event.__setitem__(key, value)


def _del(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda event: event.__delitem__(key)


def _content(value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda event: event["content"].__setitem__("x", value)


REFUSALS: list[tuple[str, Callable[[dict[str, Any]], None], str]] = [
    *[
        (f"missing {k}", _del(k), f"missing key: {k}")
        for k in (
            "type",
            "sender",
            "content",
            "depth",
            "origin_server_ts",
            "hashes",
            "signatures",
            "auth_events",
            "prev_events",
            "room_id",
        )
    ],
    ("room_id type", _set("room_id", 5), "room_id: not a string"),
    ("room_id long", _set("room_id", "!" + "r" * 250 + ":a.org"), "room_id: longer than 255 bytes"),
    (
        "room_id grammar",
        _set("room_id", "!nocolon"),
        "room_id: not a valid room id for this room version",
    ),
    (
        "room_id sigil",
        _set("room_id", "#r:a.org"),
        "room_id: not a valid room id for this room version",
    ),
    (
        "room_id domain",
        _set("room_id", "!r:bad_host"),
        "room_id: not a valid room id for this room version",
    ),
    ("type type", _set("type", ["m.room.message"]), "type: not a string"),
    ("type long", _set("type", "é" * 128), "type: longer than 255 bytes"),
    ("sender type", _set("sender", None), "sender: not a string"),
    ("sender long", _set("sender", "@" + "a" * 250 + ":a.org"), "sender: longer than 255 bytes"),
    ("sender sigil", _set("sender", "alice:example.org"), "sender: not a valid user id"),
    ("sender no server", _set("sender", "@alice"), "sender: not a valid user id"),
    ("sender bad server", _set("sender", "@alice:exa mple.org"), "sender: not a valid user id"),
    ("sender NUL", _set("sender", "@al\x00ice:example.org"), "sender: not a valid user id"),
    ("state_key type", _set("state_key", 0), "state_key: not a string"),
    ("state_key long", _set("state_key", "k" * 256), "state_key: longer than 255 bytes"),
    ("event_id type", _set("event_id", 1), "event_id: not a string"),
    ("event_id long", _set("event_id", "$" + "e" * 255), "event_id: longer than 255 bytes"),
    ("content type", _set("content", "text"), "content: not an object"),
    ("depth type", _set("depth", "7"), "depth: not an integer"),
    ("depth bool", _set("depth", True), "depth: not an integer"),
    ("depth float", _set("depth", 7.0), "depth: not an integer"),
    ("depth negative", _set("depth", -1), "depth: out of range"),
    ("depth huge", _set("depth", 2**53), "depth: out of range"),
    ("ts type", _set("origin_server_ts", 1.5), "origin_server_ts: not an integer"),
    ("ts huge", _set("origin_server_ts", 2**53), "origin_server_ts: out of range"),
    ("ts tiny", _set("origin_server_ts", -(2**53)), "origin_server_ts: out of range"),
    ("auth type", _set("auth_events", EVENT_ID), "auth_events: not a list"),
    ("auth many", _set("auth_events", [EVENT_ID] * 11), "auth_events: more than 10 entries"),
    ("auth entry", _set("auth_events", [5]), "auth_events: entry is not a string"),
    ("auth id", _set("auth_events", ["$short"]), "auth_events: entry is not a valid event id"),
    (
        "auth v1 id",
        _set("auth_events", ["$0:domain"]),
        "auth_events: entry is not a valid event id",
    ),
    ("prev type", _set("prev_events", {}), "prev_events: not a list"),
    ("prev many", _set("prev_events", [EVENT_ID] * 21), "prev_events: more than 20 entries"),
    ("prev entry", _set("prev_events", [None]), "prev_events: entry is not a string"),
    (
        "prev id",
        _set("prev_events", ["$" + "+" * 43]),
        "prev_events: entry is not a valid event id",
    ),
    ("hashes type", _set("hashes", "abc"), "hashes: not an object"),
    ("hashes sha256", _set("hashes", {"sha512": "x"}), "hashes: sha256 missing or not a string"),
    ("hashes sha256 type", _set("hashes", {"sha256": 1}), "hashes: sha256 missing or not a string"),
    ("sigs type", _set("signatures", []), "signatures: not an object"),
    ("sigs entry", _set("signatures", {"a.org": "sig"}), "signatures: entry is not an object"),
    (
        "sigs value",
        _set("signatures", {"a.org": {"ed25519:1": 1}}),
        "signatures: signature is not a string",
    ),
    ("unsigned type", _set("unsigned", "x"), "unsigned: not an object"),
    ("float", _content(1.5), "non-canonical JSON: floats are not allowed"),
    (
        "nested float",
        _content({"a": [1, {"b": 0.0}]}),
        "non-canonical JSON: floats are not allowed",
    ),
    ("big int", _content(2**53), "non-canonical JSON: integer out of range"),
    ("small int", _content([-(2**53)]), "non-canonical JSON: integer out of range"),
    (
        "unsigned float",
        _set("unsigned", {"age": 0.5}),
        "non-canonical JSON: floats are not allowed",
    ),
    ("int key", _content({1: "a"}), "non-canonical JSON: object key is not a string"),
    ("tuple", _content((1, 2)), "non-canonical JSON: unsupported type tuple"),
    ("surrogate", _content("\ud800"), "invalid unicode (lone surrogate)"),
    ("surrogate key", _set("state_key", "\udfff"), "invalid unicode (lone surrogate)"),
    ("too big", _content("x" * MAX_PDU_BYTES), f"event is larger than {MAX_PDU_BYTES} bytes"),
]


@pytest.mark.parametrize(
    ("mutate", "reason"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_refusals_name_their_reason(mutate: Callable[[dict[str, Any]], None], reason: str) -> None:
    event = pdu()
    mutate(event)
    assert reason_for(event, V11) == reason


def test_not_an_object() -> None:
    assert reason_for([pdu()], V11) == "event is not a JSON object"


def test_v12_room_ids() -> None:
    assert (
        reason_for(dict(v12_create(), room_id=V12_ROOM_ID), V12)
        == "room_id: not allowed on m.room.create in this room version"
    )
    assert (
        reason_for(dict(pdu(V12), room_id="!room:example.org"), V12)
        == "room_id: not a valid room id for this room version"
    )
    assert (
        reason_for({k: v for k, v in pdu(V12).items() if k != "room_id"}, V12)
        == "missing key: room_id"
    )
    # Before v12 a create event needs its room_id like any other.
    v11_create = v12_create()
    assert reason_for(v11_create, V11) == "missing key: room_id"
    # And v12-style hash room ids are not valid in v11.
    assert (
        reason_for(dict(pdu(V11), room_id=V12_ROOM_ID), V11)
        == "room_id: not a valid room id for this room version"
    )


def test_top_level_redacts_is_checked_only_where_it_exists() -> None:
    assert (
        reason_for(dict(pdu(V10), type="m.room.redaction", redacts=5), V10)
        == "redacts: not a string"
    )
    check_pdu_format(dict(pdu(V10), type="m.room.redaction", redacts=EVENT_ID), V10)
    # v11 has no top-level redacts: an extra key like any other.
    check_pdu_format(dict(pdu(V11), type="m.room.redaction", redacts=5), V11)


def test_deep_nesting_is_refused_not_crashed() -> None:
    nested: Any = []
    for _ in range(100_000):
        nested = [nested]
    event = pdu()
    event["content"]["deep"] = nested
    assert reason_for(event, V11) == "event is nested too deeply"


def test_check_does_not_mutate() -> None:
    event = pdu()
    before = copy.deepcopy(event)
    check_pdu_format(event, V11)
    assert event == before


def test_check_canonical_json_values_accepts_json_types() -> None:
    check_canonical_json_values(
        {"a": [None, True, False, 0, -(2**53) + 1, 2**53 - 1, "s", {"b": {}}]}
    )
