"""Shared fixtures: the spec's test signing key (appendices "Cryptographic Test Vectors")."""

from __future__ import annotations

import pytest

from homeserver.events.canonical import decode_base64
from homeserver.events.keys import SigningKey

SIGNING_KEY_SEED_B64 = "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"
SERVER_NAME = "domain"
KEY_ID = "ed25519:1"


@pytest.fixture
def spec_key() -> SigningKey:
    return SigningKey("1", decode_base64(SIGNING_KEY_SEED_B64))
