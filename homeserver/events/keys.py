"""Ed25519 signing keys: our server's key, its id, and its one-line file form.

Spec: appendices "Signing Details" (key id = algorithm ":" version) and
server-server "Retrieving server keys" (versions match ``[a-zA-Z0-9_]``).
The file form is ``ed25519 <version> <unpadded base64 seed>``, one key per
line, the same shape Synapse's signing key files use, so keys can move
between servers. Reading and writing the file is the caller's job.
"""

from __future__ import annotations

import re

from nacl.signing import SigningKey as _NaclSigningKey
from nacl.signing import VerifyKey

from homeserver.events.canonical import decode_base64, encode_base64

ALGORITHM = "ed25519"
SEED_BYTES = 32
_VERSION_RE = re.compile(r"[A-Za-z0-9_]+\Z")

__all__ = [
    "ALGORITHM",
    "SigningKey",
    "VerifyKey",
    "decode_signing_key_line",
    "decode_verify_key_base64",
    "encode_signing_key_line",
    "generate_signing_key",
    "is_valid_key_version",
    "read_signing_keys",
    "verify_key_base64",
]


def is_valid_key_version(version: str) -> bool:
    """Key versions must match ``[a-zA-Z0-9_]+`` (server-server "Retrieving server keys")."""
    return _VERSION_RE.match(version) is not None


class SigningKey:
    """An ed25519 private key with its version; ``key_id`` is ``ed25519:<version>``."""

    __slots__ = ("_nacl", "key_id", "verify_key", "version")

    def __init__(self, version: str, seed: bytes) -> None:
        if not is_valid_key_version(version):
            raise ValueError(f"invalid key version {version!r}: must match [a-zA-Z0-9_]+")
        if len(seed) != SEED_BYTES:
            raise ValueError(f"ed25519 seed must be {SEED_BYTES} bytes")
        self.version = version
        self.key_id = f"{ALGORITHM}:{version}"
        self._nacl = _NaclSigningKey(seed)
        self.verify_key: VerifyKey = self._nacl.verify_key

    @property
    def seed(self) -> bytes:
        return bytes(self._nacl)

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte detached signature of ``message``."""
        return self._nacl.sign(message).signature

    def __repr__(self) -> str:
        # Never show key material.
        return f"<SigningKey {self.key_id}>"


def generate_signing_key(version: str) -> SigningKey:
    """A fresh random key (the only impure function here: it reads the OS RNG)."""
    return SigningKey(version, bytes(_NaclSigningKey.generate()))


def encode_signing_key_line(key: SigningKey) -> str:
    """``ed25519 <version> <unpadded base64 seed>``, without a newline."""
    return f"{ALGORITHM} {key.version} {encode_base64(key.seed)}"


def decode_signing_key_line(line: str) -> SigningKey:
    """Parse one ``ed25519 <version> <base64 seed>`` line; ``ValueError`` if malformed."""
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("signing key line must be '<algorithm> <version> <base64 seed>'")
    algorithm, version, seed_b64 = parts
    if algorithm != ALGORITHM:
        raise ValueError(f"unsupported signing key algorithm {algorithm!r}")
    return SigningKey(version, decode_base64(seed_b64))


def read_signing_keys(text: str) -> list[SigningKey]:
    """All keys in a signing key file's text, one per non-blank line."""
    return [decode_signing_key_line(line) for line in text.splitlines() if line.strip()]


def verify_key_base64(key: SigningKey | VerifyKey) -> str:
    """The public key as unpadded base64, as published under ``verify_keys``."""
    verify_key = key.verify_key if isinstance(key, SigningKey) else key
    return encode_base64(bytes(verify_key))


def decode_verify_key_base64(text: str) -> VerifyKey:
    """A remote server's public key from its unpadded base64; ``ValueError`` if malformed."""
    raw = decode_base64(text)
    if len(raw) != SEED_BYTES:
        raise ValueError("ed25519 verify key must be 32 bytes")
    return VerifyKey(raw)
