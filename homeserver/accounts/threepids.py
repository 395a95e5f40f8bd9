"""Email addresses of accounts and their validation (client-server API, "Adding Account
Administrative Contact Information"; the homeserver validates email itself, with no
identity server).

A client asks for a token (``requestToken``: the server mails a link holding a
random token and answers a session id, ``sid``); the user follows the link (or the
client posts the token to ``submit_url``), which marks the session validated; the
client then proves the address with ``sid`` + ``client_secret`` in the
``m.login.email.identity`` UIA stage (registration, password reset) or in
``/account/3pid/add``. Only the SHA-256 of a token is stored; it is compared in
constant time and expires (``email.validation_token_lifetime_ms``). A validated
session is used once: the operation it allowed deletes it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Any
from urllib.parse import urlencode

from homeserver.accounts.threepids_store import (
    ThreepidInUse,
    ThreepidStore,
    ValidationSession,
)
from homeserver.clock import Clock
from homeserver.config import Config, public_client_url
from homeserver.errors import MatrixError, invalid_param
from homeserver.mail.sender import Mailer

EMAIL = "email"
# A validated session may be used for this long after validation (Synapse: 24 h too).
VALIDATED_SESSION_USE_MS = 24 * 60 * 60 * 1000
MAX_EMAIL_LENGTH = 320
# The spec's client_secret (and our sid): [0-9a-zA-Z.=_-], 1 to 255 characters.
_SECRET_RE = re.compile(r"^[0-9a-zA-Z.=_-]{1,255}$")
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
SUBMIT_TOKEN_PATH = "/_synapse/client/email/submit_token"  # noqa: S105 (a path)

# What the mail says, per purpose of the request.
_PURPOSES = {
    "register": ("Validate your email for {app}", "register an account"),
    "password_reset": ("Reset your {app} password", "reset the password of your account"),
    "add": ("Validate your email for {app}", "add this address to your account"),
}


def medium_not_supported() -> MatrixError:
    return MatrixError(400, "M_THREEPID_MEDIUM_NOT_SUPPORTED", "This server does not send email")


def canonical_email(address: str) -> str:
    """The canonical form of an address (Synapse's: trimmed, lower case), or M_INVALID_PARAM."""
    address = address.strip().lower()
    if len(address) > MAX_EMAIL_LENGTH or not _EMAIL_RE.match(address):
        raise invalid_param("Not a valid email address")
    return address


def check_client_secret(client_secret: str) -> None:
    if not _SECRET_RE.match(client_secret):
        raise invalid_param("client_secret must be 1-255 characters of [0-9a-zA-Z.=_-]")


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class ThreepidService:
    def __init__(self, config: Config, store: ThreepidStore, mailer: Mailer, clock: Clock) -> None:
        self.config = config
        self.email = config.email
        self.store = store
        self.mailer = mailer
        self.clock = clock

    @property
    def enabled(self) -> bool:
        return self.email.enabled

    def submit_url(self) -> str:
        return public_client_url(self.config) + SUBMIT_TOKEN_PATH

    # -------------------------------------------------------------- requestToken

    async def request_email_token(
        self, purpose: str, email: str, client_secret: str, send_attempt: int
    ) -> str:
        """Start (or continue) validating ``email`` for ``purpose``; mail a token unless
        this ``send_attempt`` was already handled. Returns the session id."""
        if not self.enabled:
            raise medium_not_supported()
        check_client_secret(client_secret)
        address = canonical_email(email)
        owner = await self.store.owner(EMAIL, address)
        if purpose == "password_reset":
            if owner is None:
                raise MatrixError(400, "M_THREEPID_NOT_FOUND", "No account has this address")
        elif owner is not None:
            raise MatrixError(400, "M_THREEPID_IN_USE", "This address is already in use")
        now = self.clock.now_ms()
        await self.store.delete_sessions_before(now - 2 * VALIDATED_SESSION_USE_MS)
        token = secrets.token_urlsafe(24)
        expires = now + self.email.validation_token_lifetime_ms
        session = await self.store.session_for(client_secret, EMAIL, address)
        previous_attempt = None if session is None else session.last_send_attempt
        if session is None:
            session = ValidationSession(
                session_id=secrets.token_urlsafe(18),
                client_secret=client_secret,
                medium=EMAIL,
                address=address,
                last_send_attempt=send_attempt,
                token_hash=_hash(token),
                token_expires_ts=expires,
                created_ts=now,
                validated_ts=None,
            )
            if not await self.store.create_session(session):
                found = await self.store.session_for(client_secret, EMAIL, address)
                return found.session_id if found is not None else session.session_id
        elif not await self.store.new_token(
            session.session_id, send_attempt, _hash(token), expires
        ):
            # Spec: a send_attempt not above the last one seen answers success, sends nothing.
            return session.session_id
        try:
            await self._mail_token(purpose, address, session.session_id, client_secret, token)
        except MatrixError:
            # Not sent: a retry with the same send_attempt must try again, not answer
            # success for a mail that never left.
            if previous_attempt is None:
                await self.store.delete_session(session.session_id)
            else:
                await self.store.undo_attempt(session.session_id, send_attempt, previous_attempt)
            raise
        return session.session_id

    async def _mail_token(
        self, purpose: str, address: str, sid: str, client_secret: str, token: str
    ) -> None:
        subject, action = _PURPOSES[purpose]
        app = self.email.app_name
        query = urlencode({"sid": sid, "client_secret": client_secret, "token": token})
        link = f"{self.submit_url()}?{query}"
        minutes = max(1, self.email.validation_token_lifetime_ms // 60000)
        text = (
            f"Someone asked to {action} on {app} ({self.config.server_name}) with this"
            f" email address.\n\nIf that was you, open this link to confirm:\n\n{link}\n\n"
            f"or give your client this code: {token}\n\n"
            f"The link works for {minutes} minutes. If it was not you, ignore this mail.\n"
        )
        if self.email.client_base_url:
            text += f"\n{app}: {self.email.client_base_url}\n"
        await self.mailer.send(address, subject.format(app=app), text)

    # ------------------------------------------------------------- submitToken

    async def submit_token(self, sid: str, client_secret: str, token: str) -> None:
        """Mark the session validated when the token matches (spec: the identity
        service's submitToken errors: M_INVALID_PARAM, M_SESSION_EXPIRED, M_TOKEN_INCORRECT)."""
        session = await self._session(sid, client_secret)
        if session is None:
            raise invalid_param("Unknown validation session")
        if not hmac.compare_digest(_hash(token), session.token_hash):
            raise MatrixError(400, "M_TOKEN_INCORRECT", "The token is incorrect")
        if session.validated_ts is not None:
            return  # the link opened twice
        if session.token_expires_ts <= self.clock.now_ms():
            raise MatrixError(400, "M_SESSION_EXPIRED", "The validation token has expired")
        await self.store.mark_validated(session.session_id, self.clock.now_ms())

    async def _session(self, sid: str, client_secret: str) -> ValidationSession | None:
        """The session ``sid`` if ``client_secret`` is its secret (compared in constant time)."""
        if not _SECRET_RE.match(sid) or not _SECRET_RE.match(client_secret):
            return None
        session = await self.store.session(sid)
        if session is None or not hmac.compare_digest(
            session.client_secret.encode(), client_secret.encode()
        ):
            return None
        return session

    async def validated_session(self, sid: Any, client_secret: Any) -> ValidationSession | None:
        """The session, if it was validated recently enough to be used."""
        if not isinstance(sid, str) or not isinstance(client_secret, str):
            return None
        session = await self._session(sid, client_secret)
        if session is None or session.validated_ts is None:
            return None
        if session.validated_ts < self.clock.now_ms() - VALIDATED_SESSION_USE_MS:
            return None
        return session

    async def check_email_stage(self, auth: dict[str, Any]) -> dict[str, Any] | bool:
        """The ``m.login.email.identity`` UIA stage: what the validated session proves."""
        creds = auth.get("threepid_creds", auth.get("threePidCreds"))
        if not isinstance(creds, dict):
            return False
        session = await self.validated_session(creds.get("sid"), creds.get("client_secret"))
        if session is None:
            return False
        return {
            "sid": session.session_id,
            "medium": session.medium,
            "address": session.address,
            "validated_at": session.validated_ts,
        }

    async def used(self, sid: str) -> None:
        """The operation a validated session allowed is done: it cannot be replayed."""
        await self.store.delete_session(sid)

    # --------------------------------------------------------- account 3pids

    async def list_for(self, user_nid: int) -> list[dict[str, Any]]:
        return [
            {
                "medium": t.medium,
                "address": t.address,
                "validated_at": t.validated_at,
                "added_at": t.added_at,
            }
            for t in await self.store.threepids_of(user_nid)
        ]

    async def add(self, user_nid: int, medium: str, address: str, validated_at: int) -> None:
        try:
            await self.store.add(user_nid, medium, address, validated_at, self.clock.now_ms())
        except ThreepidInUse:
            raise MatrixError(400, "M_THREEPID_IN_USE", "This address is already in use") from None

    async def add_from_session(self, user_nid: int, sid: str, client_secret: str) -> None:
        """``/account/3pid/add``: attach the address a validated session proved."""
        if not self.enabled:
            raise medium_not_supported()
        session = await self.validated_session(sid, client_secret)
        if session is None:
            raise MatrixError(
                400, "M_THREEPID_AUTH_FAILED", "No validated session for this sid and secret"
            )
        assert session.validated_ts is not None
        await self.add(user_nid, session.medium, session.address, session.validated_ts)
        await self.used(session.session_id)

    async def delete(
        self, user_nid: int, medium: str, address: str, missing_ok: bool = False
    ) -> None:
        """``missing_ok``: the address was only bound on an identity server, and that
        binding was just removed, so there is nothing to refuse."""
        if medium == EMAIL:
            address = address.strip().lower()
        if not await self.store.remove(user_nid, medium, address) and not missing_ok:
            raise MatrixError(400, "M_THREEPID_NOT_FOUND", "This address is not on your account")

    async def owner_of(self, medium: str, address: str) -> int | None:
        """The account an address belongs to (login by ``m.id.thirdparty``)."""
        if medium == EMAIL:
            address = address.strip().lower()
        return await self.store.owner(medium, address)
