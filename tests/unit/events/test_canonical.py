"""Canonical JSON and unpadded Base64 against the appendices' examples."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.canonical import (
    decode_base64,
    decode_json,
    decode_stored_json,
    encode_base64,
    encode_canonical_json,
)

# appendices "Canonical JSON" > "Examples": (input JSON text, canonical output).
CANONICAL_EXAMPLES = [
    ("{}", "{}"),
    ('{\n    "one": 1,\n    "two": "Two"\n}', '{"one":1,"two":"Two"}'),
    ('{\n    "b": "2",\n    "a": "1"\n}', '{"a":"1","b":"2"}'),
    ('{"b":"2","a":"1"}', '{"a":"1","b":"2"}'),
    (
        '{"auth": {"success": true, "mxid": "@john.doe:example.com", "profile": {'
        '"display_name": "John Doe", "three_pids": [{"medium": "email", "address": '
        '"john.doe@example.org"}, {"medium": "msisdn", "address": "123456789"}]}}}',
        '{"auth":{"mxid":"@john.doe:example.com","profile":{"display_name":"John Doe",'
        '"three_pids":[{"address":"john.doe@example.org","medium":"email"},'
        '{"address":"123456789","medium":"msisdn"}]},"success":true}}',
    ),
    ('{"a": "日本語"}', '{"a":"日本語"}'),
    ('{"本": 2, "日": 1}', '{"日":1,"本":2}'),
    ('{"a": "\\u65E5"}', '{"a":"日"}'),
    ('{"a": null}', '{"a":null}'),
    ('{"a": -0, "b": 1e10}', '{"a":0,"b":10000000000}'),
]


@pytest.mark.parametrize(("source", "expected"), CANONICAL_EXAMPLES)
def test_canonical_json_spec_examples(source: str, expected: str) -> None:
    assert encode_canonical_json(decode_json(source)) == expected.encode("utf-8")


def test_canonical_json_escapes_control_characters_only() -> None:
    assert encode_canonical_json({"a": '\u0001\n"\\/é'}) == b'{"a":"\\u0001\\n\\"\\\\/\xc3\xa9"}'


def test_decode_json_keeps_real_fractions_and_rejects_nan() -> None:
    assert decode_json("[1.5, 2.0, -0.0]") == [1.5, 2, 0]
    assert type(decode_json("2.0")) is int
    with pytest.raises(ValueError, match="NaN"):
        decode_json('{"a": NaN}')
    with pytest.raises(ValueError, match="Infinity"):
        decode_json("[-Infinity]")


# appendices "Unpadded Base64" examples.
BASE64_EXAMPLES = [
    (b"", ""),
    (b"f", "Zg"),
    (b"fo", "Zm8"),
    (b"foo", "Zm9v"),
    (b"foob", "Zm9vYg"),
    (b"fooba", "Zm9vYmE"),
    (b"foobar", "Zm9vYmFy"),
]


@pytest.mark.parametrize(("raw", "encoded"), BASE64_EXAMPLES)
def test_unpadded_base64_spec_examples(raw: bytes, encoded: str) -> None:
    assert encode_base64(raw) == encoded
    assert decode_base64(encoded) == raw
    # Decoders SHOULD accept padded input too.
    assert decode_base64(encoded + "=" * (-len(encoded) % 4)) == raw


def test_urlsafe_base64_uses_minus_and_underscore() -> None:
    raw = bytes([0xFB, 0xFF, 0xBF])
    assert encode_base64(raw) == "+/+/"
    assert encode_base64(raw, urlsafe=True) == "-_-_"
    assert decode_base64("-_-_", urlsafe=True) == raw
    assert decode_base64("+/+/") == raw


def test_decode_base64_accepts_partial_padding() -> None:
    assert decode_base64("Zg=") == b"f"


@pytest.mark.parametrize(
    ("text", "urlsafe"),
    [
        ("Z", False),  # impossible length
        ("Zm9v!", False),
        ("-_-_", False),  # url-safe alphabet where standard is required
        ("+/+/", True),  # standard alphabet where url-safe is required
        ("Zm9v===", False),
        ("Zm9vé", False),
    ],
)
def test_decode_base64_rejects_malformed(text: str, urlsafe: bool) -> None:
    with pytest.raises(ValueError):
        decode_base64(text, urlsafe=urlsafe)


def test_encode_canonical_json_rejects_nan() -> None:
    value: Any = {"a": float("nan")}
    with pytest.raises(ValueError):
        encode_canonical_json(value)


def test_decode_stored_json_round_trips_to_the_stored_bytes() -> None:
    # A v6+ event (canonical values only) decodes to what re-encodes to the stored bytes.
    pdu = {"content": {"big": 2**53 - 1, "neg": -(2**53) + 1, "s": "é\u0000"}, "type": "m.x"}
    stored = encode_canonical_json(pdu).decode()
    decoded = decode_stored_json(stored, strict_canonical=True)
    assert decoded == pdu
    assert encode_canonical_json(decoded).decode() == stored
    # Older room versions may hold any number: read as decode_json reads it, never
    # rounded through a float.
    huge = '{"n":123456789012345678901234567890,"x":1e2}'
    assert decode_stored_json(huge, strict_canonical=False) == decode_json(huge)
    assert decode_stored_json(huge, strict_canonical=False)["n"] == 123456789012345678901234567890
    with pytest.raises(ValueError):
        decode_stored_json('{"n": NaN}', strict_canonical=True)
    with pytest.raises(ValueError):
        decode_stored_json('{"n": NaN}', strict_canonical=False)


def test_decode_stored_json_shares_key_strings_between_documents() -> None:
    # The memory point of decode_stored_json: two stored events share their keys.
    first = decode_stored_json('{"content":{},"sender":"@a:x"}', strict_canonical=True)
    second = decode_stored_json('{"content":{},"sender":"@b:x"}', strict_canonical=True)
    assert [id(k) for k in first] == [id(k) for k in second]
