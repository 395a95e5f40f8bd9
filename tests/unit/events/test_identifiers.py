"""Identifier grammar (appendices "Identifier Grammar")."""

from __future__ import annotations

import pytest

from homeserver.events.room_versions import V1, V2, V3, V4, V10, V11, V12
from homeserver.events.validate import (
    InvalidIdentifierError,
    is_valid_event_id,
    is_valid_localpart,
    is_valid_room_alias,
    is_valid_room_id,
    is_valid_server_name,
    is_valid_user_id,
    parse_user_id,
)


@pytest.mark.parametrize(
    "name",
    [
        # appendices "Server Name" examples
        "matrix.org",
        "matrix.org:8888",
        "1.2.3.4",
        "1.2.3.4:1234",
        "[1234:5678::abcd]",
        "[1234:5678::abcd]:5678",
        # and more
        "localhost",
        "MATRIX.ORG",
        "a-b.c",
        "[::1]",
        "[::ffff:1.2.3.4]:80",
        "255.255.255.255",
        "x" * 255,
    ],
)
def test_valid_server_names(name: str) -> None:
    assert is_valid_server_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ":8448",
        "matrix.org:",
        "matrix.org:123456",
        "matrix.org:80a",
        "matrix.org:80:81",
        "under_score.org",
        "spa ce.org",
        "ünicode.org",
        "256.1.1.1",
        "[1234:5678::abcd",
        "[1234:5678::abcd]x",
        "[1234:5678::abcd]:",
        "[::g]",
        "[1:2:3:4:5:6:7:8:9]",
        "[fe80::1%eth0]",
        "[]",
        "x" * 256,
        "matrix.org/path",
    ],
)
def test_invalid_server_names(name: str) -> None:
    assert not is_valid_server_name(name)


def test_localparts() -> None:
    assert is_valid_localpart("alice.b_c=d-e/f+g0")
    for bad in ["", "Alice", "al ice", "al:ice", "ü", "a*"]:
        assert not is_valid_localpart(bad)
    # Historical localparts (strict=False): anything but ':' and NUL, even empty.
    for ok in ["", "Alice", "al ice", "ü!*", "\x01"]:
        assert is_valid_localpart(ok, strict=False)
    for bad in ["al:ice", "a\x00", "\ud800"]:
        assert not is_valid_localpart(bad, strict=False)


def test_user_ids() -> None:
    assert is_valid_user_id("@alice:example.org")
    assert is_valid_user_id("@alice:[::1]:8448")
    assert is_valid_user_id("@" + "a" * 240 + ":example.org")  # 253 bytes
    assert not is_valid_user_id("@" + "a" * 244 + ":example.org")  # 257 bytes
    assert not is_valid_user_id("@Alice:example.org")
    assert is_valid_user_id("@Alice:example.org", strict=False)
    assert is_valid_user_id("@:example.org", strict=False)
    for bad in ["alice:example.org", "@alice", "@alice:", "@alice:bad host", "#alice:example.org"]:
        assert not is_valid_user_id(bad, strict=False)


def test_parse_user_id_splits_at_first_colon() -> None:
    assert parse_user_id("@alice:example.org:8448") == ("alice", "example.org:8448")
    assert parse_user_id("@bob:[::1]") == ("bob", "[::1]")
    assert parse_user_id("@Bob:example.org") == ("Bob", "example.org")
    with pytest.raises(InvalidIdentifierError):
        parse_user_id("@Bob:example.org", strict=True)
    with pytest.raises(ValueError, match="invalid user id"):
        parse_user_id("bob")


def test_room_aliases() -> None:
    assert is_valid_room_alias("#room:example.org")
    assert is_valid_room_alias("#Rööm name!:example.org:8448")
    assert is_valid_room_alias("#:example.org")
    assert not is_valid_room_alias("#a:b:c")  # "b:c" is not a server name
    assert not is_valid_room_alias("!room:example.org")
    assert not is_valid_room_alias("#room")
    assert not is_valid_room_alias("#r\x00:example.org")
    assert not is_valid_room_alias("#" + "r" * 250 + ":a.org")


def test_room_ids_per_version() -> None:
    hashed = "!" + "A" * 42 + "_"
    for rv in (V10, V11):
        assert is_valid_room_id("!abc:example.org", rv)
        assert not is_valid_room_id(hashed, rv)
        assert not is_valid_room_id("!abc", rv)
    assert is_valid_room_id(hashed, V12)
    assert not is_valid_room_id("!abc:example.org", V12)
    assert not is_valid_room_id("!" + "A" * 44, V12)
    assert not is_valid_room_id("!" + "A" * 42 + "=", V12)
    assert not is_valid_room_id("$" + "A" * 43, V12)


def test_event_ids() -> None:
    urlsafe = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg"  # rooms v4 "Event IDs"
    standard = "$acR1l0raoZnm60CBwAVgqbZqoO/mYU81xysh1u7XcJk"  # rooms v3 "Event IDs"
    assert is_valid_event_id(urlsafe, V4)
    assert not is_valid_event_id("$0:domain", V4)
    assert not is_valid_event_id(standard, V4)
    assert is_valid_event_id(standard, V3)
    assert not is_valid_event_id(urlsafe.replace("-", "_").replace("q", "-"), V3)
    assert is_valid_event_id("$0:domain", V1)  # v1-event-ids: $opaque_id:domain
    assert not is_valid_event_id("$0", V2)
    assert not is_valid_event_id("$:domain", V2)
    assert not is_valid_event_id(urlsafe, V1)
    # Without a room version, any version's grammar.
    for event_id in (urlsafe, standard, "$0:domain"):
        assert is_valid_event_id(event_id)
    assert not is_valid_event_id("Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg")
    assert not is_valid_event_id("$Rqnc+F/dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg", V10)
    assert not is_valid_event_id("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg\n")
