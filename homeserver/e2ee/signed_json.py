"""Pure checks of the signed JSON objects clients upload (spec: "Device keys",
"Cross-signing", appendices "Signing JSON").

Every function takes plain data and returns plain data or raises
``MatrixError``; nothing here touches storage. Error messages name fields,
never key material.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.canonical import encode_canonical_json
from homeserver.events.keys import decode_verify_key_base64
from homeserver.events.signing import SignatureError, verify_json_signature

CROSS_SIGNING_USAGES = ("master", "self_signing", "user_signing")


def invalid_signature(error: str = "Invalid signature") -> MatrixError:
    return MatrixError(400, "M_INVALID_SIGNATURE", error)


def unsigned_part(obj: dict[str, Any]) -> bytes:
    """Canonical JSON of ``obj`` without ``signatures`` and ``unsigned``."""
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    )


def same_signed_object(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Do two signed objects agree on everything but their signatures?"""
    return unsigned_part(a) == unsigned_part(b)


def has_valid_signature(obj: dict[str, Any], signer: str, key_id: str, public_key: str) -> bool:
    """Does ``obj`` carry a valid signature by ``signer`` with ``key_id`` (ed25519:...)?"""
    try:
        verify_key = decode_verify_key_base64(public_key)
        verify_json_signature(obj, signer, key_id, verify_key)
    except (SignatureError, ValueError):
        return False
    return True


def signature_of(obj: dict[str, Any], signer: str, key_id: str) -> str | None:
    sigs = obj.get("signatures")
    if not isinstance(sigs, dict):
        return None
    by_signer = sigs.get(signer)
    if not isinstance(by_signer, dict):
        return None
    value = by_signer.get(key_id)
    return value if isinstance(value, str) else None


def signatures_by(obj: dict[str, Any], signer: str) -> dict[str, str]:
    """The ``key_id -> signature`` map of ``signer`` in ``obj`` (strings only)."""
    sigs = obj.get("signatures")
    by_signer = sigs.get(signer) if isinstance(sigs, dict) else None
    if not isinstance(by_signer, dict):
        return {}
    return {k: v for k, v in by_signer.items() if isinstance(k, str) and isinstance(v, str)}


def check_device_keys(obj: Any, user_id: str, device_id: str) -> tuple[str, str | None]:
    """Validate uploaded ``device_keys`` (spec: "Uploading keys"); return (ed25519, curve25519),
    the ed25519 key "" when there is none.

    They must name the uploading user and device. The self-signature is not
    verified here: the spec makes that
    the job of the clients that download the keys (and Synapse stores them
    as they come), so a signature we cannot check is no reason to refuse.
    """
    if not isinstance(obj, dict):
        raise bad_json("'device_keys' must be an object")
    if obj.get("user_id") != user_id or obj.get("device_id") != device_id:
        raise invalid_param("'device_keys' must be for the user and device of the access token")
    algorithms = obj.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) for a in algorithms):
        raise bad_json("'device_keys.algorithms' must be a list of strings")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        raise bad_json("'device_keys.keys' must be an object of strings")
    # The spec names no required key algorithm; without an ed25519 key the device simply
    # cannot have its signatures checked (e.g. by cross-signing uploads).
    ed25519 = keys.get(f"ed25519:{device_id}") or ""
    curve25519 = keys.get(f"curve25519:{device_id}")
    if not isinstance(obj.get("signatures"), dict):
        raise bad_json("'device_keys.signatures' must be an object")
    return ed25519, curve25519


def check_cross_signing_key(obj: Any, user_id: str, usage: str) -> str:
    """Validate one uploaded cross-signing key (spec: "Cross-signing"); return its public key."""
    field = f"{usage}_key"
    if not isinstance(obj, dict):
        raise bad_json(f"'{field}' must be an object")
    if obj.get("user_id") != user_id:
        raise invalid_param(f"'{field}.user_id' must be your user id")
    usages = obj.get("usage")
    if not isinstance(usages, list) or usage not in usages:
        raise invalid_param(f"'{field}.usage' must include '{usage}'")
    keys = obj.get("keys")
    if not isinstance(keys, dict) or len(keys) != 1:
        raise invalid_param(f"'{field}.keys' must hold exactly one key")
    ((key_id, public_key),) = keys.items()
    if not isinstance(public_key, str) or key_id != f"ed25519:{public_key}":
        raise invalid_param(f"'{field}.keys' must map 'ed25519:<key>' to that key")
    try:
        decode_verify_key_base64(public_key)
    except ValueError:
        raise invalid_param(f"'{field}' does not hold a valid ed25519 key") from None
    return public_key


def check_key_object(name: str, value: Any) -> tuple[str, str]:
    """Split a one-time/fallback key name ``<algorithm>:<key_id>``; the value is a string
    or a signed object (spec: "Key algorithms")."""
    algorithm, sep, key_id = name.partition(":")
    if not sep or not algorithm or not key_id or len(name) > 255:
        raise bad_json("key names must look like '<algorithm>:<key_id>'")
    if not isinstance(value, str | dict):
        raise bad_json("a one-time or fallback key must be a string or an object")
    return algorithm, key_id
