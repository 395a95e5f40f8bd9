"""A real Olm device for tests (vodozemac) and real ed25519 cross-signing keys (pynacl)."""

from __future__ import annotations

from typing import Any

import vodozemac
from nacl.signing import SigningKey

from homeserver.events.canonical import encode_base64, encode_canonical_json

OLM = "m.olm.v1.curve25519-aes-sha2"
MEGOLM = "m.megolm.v1.aes-sha2"


def _signable(obj: dict[str, Any]) -> bytes:
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )


def add_signature(obj: dict[str, Any], user_id: str, key_id: str, sig: str) -> dict[str, Any]:
    out = dict(obj)
    sigs = {k: dict(v) for k, v in obj.get("signatures", {}).items()}
    sigs.setdefault(user_id, {})[key_id] = sig
    out["signatures"] = sigs
    return out


class Device:
    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.account = vodozemac.Account()

    @property
    def ed25519(self) -> str:
        return str(self.account.ed25519_key.to_base64())

    @property
    def curve25519(self) -> str:
        return str(self.account.curve25519_key.to_base64())

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        sig = self.account.sign(_signable(obj)).to_base64()
        return add_signature(obj, self.user_id, f"ed25519:{self.device_id}", sig)

    def device_keys(self) -> dict[str, Any]:
        return self.sign(
            {
                "user_id": self.user_id,
                "device_id": self.device_id,
                "algorithms": [OLM, MEGOLM],
                "keys": {
                    f"ed25519:{self.device_id}": self.ed25519,
                    f"curve25519:{self.device_id}": self.curve25519,
                },
            }
        )

    def one_time_keys(self, n: int) -> dict[str, Any]:
        self.account.generate_one_time_keys(n)
        out = {
            f"signed_curve25519:{kid}": self.sign({"key": key.to_base64()})
            for kid, key in self.account.one_time_keys.items()
        }
        self.account.mark_keys_as_published()
        return out

    def fallback_key(self) -> dict[str, Any]:
        self.account.generate_fallback_key()
        ((kid, key),) = self.account.fallback_key.items()
        out = {f"signed_curve25519:{kid}": self.sign({"key": key.to_base64(), "fallback": True})}
        self.account.mark_keys_as_published()
        return out


class CrossSigningKey:
    """A cross-signing key pair; ``obj`` is the public key object, signed as needed."""

    def __init__(self, user_id: str, usage: str) -> None:
        self.user_id = user_id
        self.usage = usage
        self.key = SigningKey.generate()
        self.public = encode_base64(bytes(self.key.verify_key))
        self.key_id = f"ed25519:{self.public}"

    def obj(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "usage": [self.usage], "keys": {self.key_id: self.public}}

    def sign(self, obj: dict[str, Any]) -> dict[str, Any]:
        sig = encode_base64(self.key.sign(_signable(obj)).signature)
        return add_signature(obj, self.user_id, self.key_id, sig)
