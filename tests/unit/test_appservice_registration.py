"""Registration files read as Synapse reads them: a mautrix bridge's file works as is,
and a bad one stops the start-up with an error naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from homeserver.appservices.registration import (
    RegistrationError,
    load_registrations,
    parse_registration,
)

# As mautrix-telegram writes it (ids and tokens changed).
BRIDGE = """
id: telegram
url: http://127.0.0.1:29317
as_token: aaaa
hs_token: bbbb
sender_localpart: telegrambot
namespaces:
  users:
  - exclusive: true
    regex: '@telegram_.*:example\\.org'
  - exclusive: true
    regex: '@telegrambot:example\\.org'
  aliases:
  - exclusive: true
    regex: \\#telegram_.*:example\\.org
rate_limited: false
de.sorunome.msc2409.push_ephemeral: true
protocols: [telegram]
"""


def good() -> dict[str, Any]:
    info: dict[str, Any] = yaml.safe_load(BRIDGE)
    return info


def test_a_bridge_file_is_read() -> None:
    s = parse_registration(good(), "example.org", "reg.yaml")
    assert (s.id, s.url, s.sender) == (
        "telegram",
        "http://127.0.0.1:29317",
        "@telegrambot:example.org",
    )
    assert not s.rate_limited and s.receive_ephemeral and s.protocols == ("telegram",)
    assert s.is_interested_in_user("@telegram_123:example.org")
    assert s.is_exclusive_user("@telegram_123:example.org")
    assert not s.is_interested_in_user("@alice:example.org")
    # The regex covers the whole id, not a prefix of it.
    assert not s.is_interested_in_user("@telegram_1:example.org.evil")
    assert s.is_exclusive_alias("#telegram_chat:example.org")
    assert not s.is_interested_in_room("!abc:example.org")


def test_defaults_and_null_url() -> None:
    info = good()
    info["url"] = None
    for key in ("rate_limited", "de.sorunome.msc2409.push_ephemeral", "protocols", "namespaces"):
        del info[key]
    s = parse_registration(info, "example.org", "reg.yaml")
    assert s.url is None and s.rate_limited and not s.receive_ephemeral
    assert s.users == () and s.is_interested_in_user("@telegrambot:example.org")
    info["receive_ephemeral"] = True
    assert parse_registration(info, "example.org", "reg.yaml").receive_ephemeral


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": None}, "'id' is required"),
        ({"as_token": 5}, "'as_token' is required"),
        ({"hs_token": ""}, "'hs_token' is required"),
        ({"sender_localpart": "Bad Name"}, "'sender_localpart' is not a valid"),
        ({"url": "ftp://x"}, "'url' must be an http(s) URL or null"),
        ({"rate_limited": "no"}, "'rate_limited' must be true or false"),
        ({"protocols": "irc"}, "'protocols' must be a list of strings"),
        ({"namespaces": []}, "'namespaces' must be a mapping"),
        ({"namespaces": {"users": {}}}, "'namespaces.users' must be a list"),
        ({"namespaces": {"users": [{"regex": "@a"}]}}, "'namespaces.users[0].exclusive'"),
        ({"namespaces": {"rooms": [{"exclusive": True}]}}, "'namespaces.rooms[0].regex'"),
        ({"namespaces": {"aliases": [{"exclusive": 1, "regex": "#a"}]}}, ".exclusive'"),
        ({"namespaces": {"users": [{"exclusive": True, "regex": "(("}]}}, "is invalid"),
        ({"receive_ephemeral": "yes"}, "'receive_ephemeral' must be true or false"),
    ],
)
def test_bad_registrations_are_named(change: dict[str, Any], message: str) -> None:
    info = {**good(), **change}
    with pytest.raises(RegistrationError, match=r"^reg\.yaml: ") as caught:
        parse_registration(info, "example.org", "reg.yaml")
    assert message in str(caught.value)


def test_url_is_required_even_if_null() -> None:
    info = good()
    del info["url"]
    with pytest.raises(RegistrationError, match="'url' is required"):
        parse_registration(info, "example.org", "reg.yaml")


def test_files_ids_and_tokens(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(BRIDGE)
    assert [s.id for s in load_registrations([str(one)], "example.org")] == ["telegram"]
    with pytest.raises(RegistrationError, match="cannot read"):
        load_registrations([str(tmp_path / "missing.yaml")], "example.org")
    broken = tmp_path / "broken.yaml"
    broken.write_text("id: [unclosed")
    with pytest.raises(RegistrationError, match="invalid YAML"):
        load_registrations([str(broken)], "example.org")
    other = tmp_path / "other.yaml"
    other.write_text(
        BRIDGE.replace("id: telegram", "id: other").replace("hs_token: bbbb", "hs_token: c")
    )
    with pytest.raises(RegistrationError, match="'as_token' is used by another registration"):
        load_registrations([str(one), str(other)], "example.org")
    with pytest.raises(RegistrationError, match="'id' is used by another"):
        load_registrations([str(one), str(one)], "example.org")
