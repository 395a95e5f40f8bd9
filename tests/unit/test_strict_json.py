"""Strict JSON decoding of federation bodies and answers (``decode_json_bytes``, and
``decode_json_buffer``, which the federation client's answers go through)."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.http.bodies import (
    BadJsonBytes,
    decode_json_buffer,
    decode_json_bytes,
    parse_json_bytes,
)


@pytest.mark.parametrize(
    "raw",
    [b'{"a": 1, "a": 2}', b'[{"x": {"b": 1, "b": 1}}]', b'{"a": {}, "a": {}}'],
)
def test_duplicate_keys_refused_when_asked(raw: bytes) -> None:
    with pytest.raises(BadJsonBytes, match="duplicate key"):
        decode_json_bytes(raw, unique_keys=True)
    decode_json_bytes(raw)  # the client API keeps the lenient reading


def test_absurd_nesting_is_a_bad_body_not_a_crash() -> None:
    raw = b"[" * 200_000 + b"]" * 200_000
    with pytest.raises(BadJsonBytes, match="nested too deeply"):
        decode_json_bytes(raw)
    with pytest.raises(MatrixError) as e:
        parse_json_bytes(raw)
    assert (e.value.status, e.value.errcode) == (400, "M_NOT_JSON")


def test_unique_keys_accepts_ordinary_json() -> None:
    raw = b'{"a": [{"b": 1}, {"b": 2}], "c": {"d": null}}'
    assert decode_json_bytes(raw, unique_keys=True) == {
        "a": [{"b": 1}, {"b": 2}],
        "c": {"d": None},
    }


def test_a_buffer_is_read_as_strictly_and_emptied_before_the_parse() -> None:
    """The federation client's answers: the same strict reading, and the bytes are
    released once decoded (a room's state is megabytes: bytes, text and objects are
    not held at once), whether the answer parses or not."""
    buf = bytearray(b'{"pdus": [{"a": 1}, {"b": "\\u00e9t\xc3\xa9"}]}')
    assert decode_json_buffer(buf, unique_keys=True) == {"pdus": [{"a": 1}, {"b": "\u00e9t\u00e9"}]}
    assert buf == bytearray()
    for bad, why in [
        (b'{"a": 1, "a": 2}', "duplicate key"),
        (b'{"a": "\xff"}', "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b'["\\ud800"]', "unpaired"),
    ]:
        buf = bytearray(bad)
        with pytest.raises(BadJsonBytes, match=why):
            decode_json_buffer(buf, unique_keys=True)
        assert buf == bytearray()
