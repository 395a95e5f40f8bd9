"""Token generation and password hashing.

Access and refresh tokens are 256 random bits; only their SHA-256 is
stored. Passwords use argon2id (argon2-cffi) and are hashed in a thread so
the event loop keeps serving while the slow hash runs.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()


def new_token(prefix: str) -> str:
    """A fresh opaque token: a readable prefix and 256 random bits."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_device_id() -> str:
    return "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(10))


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def check_password(password: str, password_hash: str | None) -> bool:
    """Constant-time check; an account without a password always fails."""
    if not password_hash:
        # Spend comparable time so existence is not revealed by timing.
        await asyncio.to_thread(_hasher.hash, password)
        return False
    try:
        return await asyncio.to_thread(_hasher.verify, password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def constant_time_equals(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))
