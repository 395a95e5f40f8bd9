"""An encrypted attachment (client-server "Sending encrypted attachments"), done here with
``cryptography`` the way clients do it: AES-256-CTR with a random key and a 128-bit IV whose
counter half is zero, the SHA-256 of the ciphertext, the key as a JWK. The server stores the
ciphertext only: the download decrypts byte for byte and the stored file holds no plaintext."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.media_support import download, upload_ok


def b64(data: bytes, *, url: bool = False) -> str:
    raw = base64.urlsafe_b64encode(data) if url else base64.b64encode(data)
    return raw.decode().rstrip("=")


def unb64(text: str, *, url: bool = False) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.urlsafe_b64decode(padded) if url else base64.b64decode(padded)


def encrypt(plaintext: bytes) -> tuple[bytes, dict[str, object]]:
    """Ciphertext and the ``file`` object (EncryptedFile) an event would carry."""
    key = os.urandom(32)
    iv = os.urandom(8) + b"\x00" * 8
    enc = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    ciphertext = enc.update(plaintext) + enc.finalize()
    info: dict[str, object] = {
        "v": "v2",
        "key": {
            "kty": "oct",
            "key_ops": ["encrypt", "decrypt"],
            "alg": "A256CTR",
            "k": b64(key, url=True),
            "ext": True,
        },
        "iv": b64(iv),
        "hashes": {"sha256": b64(hashlib.sha256(ciphertext).digest())},
    }
    return ciphertext, info


def decrypt(ciphertext: bytes, info: dict[str, object]) -> bytes:
    hashes = info["hashes"]
    assert isinstance(hashes, dict)
    assert b64(hashlib.sha256(ciphertext).digest()) == hashes["sha256"], "ciphertext altered"
    jwk = info["key"]
    assert isinstance(jwk, dict) and jwk["alg"] == "A256CTR"
    iv = info["iv"]
    assert isinstance(iv, str)
    dec = Cipher(algorithms.AES(unb64(jwk["k"], url=True)), modes.CTR(unb64(iv))).decryptor()
    return dec.update(ciphertext) + dec.finalize()


async def test_encrypted_attachment_round_trip(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    plaintext = b"TOP-SECRET-PLAINTEXT " * 5000 + os.urandom(1000)
    ciphertext, info = encrypt(plaintext)
    s, m = await upload_ok(api, alice, ciphertext, "application/octet-stream")
    r = await download(api, bob, s, m)
    assert r.status == 200
    assert r.body == ciphertext
    assert decrypt(r.body, info) == plaintext
    stored = [p for p in (Path(server.hs.config.media.store_path)).rglob("*") if p.is_file()]
    assert [p.read_bytes() for p in stored] == [ciphertext]
    assert b"TOP-SECRET-PLAINTEXT" not in stored[0].read_bytes()
