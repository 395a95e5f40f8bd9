"""Signing keys: ids, the one-line file form, public key encoding."""

from __future__ import annotations

import io

import pytest
import signedjson.key

from homeserver.events.keys import (
    SigningKey,
    decode_signing_key_line,
    decode_verify_key_base64,
    encode_signing_key_line,
    generate_signing_key,
    is_valid_key_version,
    read_signing_keys,
    verify_key_base64,
)

from .conftest import SIGNING_KEY_SEED_B64

# The public half of the spec's test seed, as signedjson computes it.
SPEC_VERIFY_KEY_B64 = "XGX0JRS2Af3be3knz2fBiRbApjm2Dh61gXDJA8kcJNI"
# The spec writes the seed with non-zero trailing bits ("...XA1"); the
# canonical unpadded encoding of the same 32 bytes ends in "...XA0".
SPEC_KEY_LINE = "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0"


def test_key_id_and_verify_key(spec_key: SigningKey) -> None:
    assert spec_key.key_id == "ed25519:1"
    assert spec_key.version == "1"
    assert verify_key_base64(spec_key) == SPEC_VERIFY_KEY_B64
    assert verify_key_base64(spec_key.verify_key) == SPEC_VERIFY_KEY_B64
    assert "YJDBA9" not in repr(spec_key)


def test_line_round_trip_matches_synapse_format(spec_key: SigningKey) -> None:
    assert encode_signing_key_line(spec_key) == SPEC_KEY_LINE
    parsed = decode_signing_key_line(SPEC_KEY_LINE)
    assert parsed.seed == spec_key.seed
    assert parsed.key_id == "ed25519:1"
    # The spec's own (non-canonical) spelling of the seed also parses.
    assert decode_signing_key_line(f"ed25519 1 {SIGNING_KEY_SEED_B64}").seed == spec_key.seed


def test_signedjson_reads_our_line_and_we_read_its(spec_key: SigningKey) -> None:
    (theirs,) = signedjson.key.read_signing_keys(io.StringIO(SPEC_KEY_LINE + "\n"))
    assert theirs.version == "1"
    assert bytes(theirs) == spec_key.seed
    out = io.StringIO()
    signedjson.key.write_signing_keys(out, [theirs])
    (ours,) = read_signing_keys(out.getvalue())
    assert ours.seed == spec_key.seed


def test_read_signing_keys_skips_blank_lines() -> None:
    generated = generate_signing_key("a_bc")
    text = f"\n{encode_signing_key_line(generated)}\n\n{SPEC_KEY_LINE}\n"
    keys = read_signing_keys(text)
    assert [k.key_id for k in keys] == ["ed25519:a_bc", "ed25519:1"]
    assert keys[0].seed == generated.seed


def test_generated_keys_differ_and_sign() -> None:
    a, b = generate_signing_key("x"), generate_signing_key("x")
    assert a.seed != b.seed
    signature = a.sign(b"message")
    assert len(signature) == 64
    a.verify_key.verify(b"message", signature)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ed25519 1", "must be"),
        ("ed25519 1 AAAA extra", "must be"),
        ("curve25519 1 " + "A" * 43, "unsupported"),
        ("ed25519 bad-version " + "A" * 43, "version"),
        ("ed25519 1 AAAA", "32 bytes"),
        ("ed25519 1 !!!!", "base64"),
    ],
)
def test_decode_signing_key_line_rejects(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_signing_key_line(line)


def test_key_versions() -> None:
    assert is_valid_key_version("a_B9")
    assert not is_valid_key_version("")
    assert not is_valid_key_version("a:b")
    assert not is_valid_key_version("a-b")


def test_decode_verify_key_base64(spec_key: SigningKey) -> None:
    key = decode_verify_key_base64(SPEC_VERIFY_KEY_B64)
    assert key == spec_key.verify_key
    key.verify(b"m", spec_key.sign(b"m"))
    with pytest.raises(ValueError, match="32 bytes"):
        decode_verify_key_base64("AAAA")
