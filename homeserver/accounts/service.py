"""Accounts: registration, login, sessions, passwords, deactivation, devices, profiles.

Other areas react to account changes through hooks registered by the
composition root (rooms leave a deactivated user's rooms, e2ee drops a
deleted device's keys, profile changes update membership events), so this
module knows nothing about rooms or keys.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.passwords import PasswordHashing
from homeserver.accounts.requester import Requester
from homeserver.accounts.secrets import (
    hash_token,
    new_device_id,
    new_token,
)
from homeserver.accounts.store import AccountStore, UserExists, UserRecord
from homeserver.accounts.uia import UiaService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.errors import MatrixError, forbidden, not_found
from homeserver.events.identifiers import is_valid_localpart

MAX_USER_ID_LENGTH = 255
MAX_DISPLAYNAME_LENGTH = 256
MAX_AVATAR_URL_LENGTH = 1000
MAX_PASSWORD_LENGTH = 512
MAX_DEVICE_ID_LENGTH = 255

DevicesHook = Callable[[str, list[str]], Awaitable[None]]
UserHook = Callable[[str], Awaitable[None]]
# Asks a user's own server for their public profile (federation "Querying for information").
RemoteProfileLookup = Callable[[str], Awaitable[dict[str, str]]]


@dataclass(frozen=True, slots=True)
class Session:
    """What /login and /register answer with."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None

    def to_json(self, server_name: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "access_token": self.access_token,
            "home_server": server_name,
        }
        if self.refresh_token is not None:
            out["refresh_token"] = self.refresh_token
            out["expires_in_ms"] = self.expires_in_ms
        return out


class AccountService:
    def __init__(
        self,
        config: Config,
        store: AccountStore,
        auth: Authenticator,
        clock: Clock,
        passwords: PasswordHashing,
    ) -> None:
        self.config = config
        self.passwords = passwords
        self.store = store
        self.auth = auth
        self.clock = clock
        self.server_name = config.server_name
        # Called after devices are deleted: (user_id, device_ids).
        self.devices_deleted_hooks: list[DevicesHook] = []
        # Called after a device is created at login/registration: (user_id, [device_id]).
        self.device_created_hooks: list[DevicesHook] = []
        # Called after a device's display name changed: (user_id, [device_id]); the name
        # is in /keys/query answers, so other users and servers must hear of it.
        self.device_renamed_hooks: list[DevicesHook] = []
        # Called after deactivation, with the user id.
        self.deactivated_hooks: list[UserHook] = []
        # Called after a deactivation with erase: true, with the user id, in order:
        # the erasure is recorded first, then the user's events are pruned.
        self.erased_hooks: list[UserHook] = []
        # Called after a displayname or avatar change, with the user id.
        self.profile_changed_hooks: list[UserHook] = []
        # Set by federation: profiles of users on other servers (None: not federating).
        self.remote_profile_lookup: RemoteProfileLookup | None = None
        # Set when application services are configured: raises M_EXCLUSIVE for a user id
        # a service holds exclusively (ordinary registration may not take it).
        self.exclusive_user_check: Callable[[str], None] | None = None
        # Asks the application services for an unknown local user in their namespace;
        # True when one created it (spec AS API "Query User").
        self.unknown_user_query: Callable[[str], Awaitable[bool]] | None = None

    # ------------------------------------------------------------ user ids

    def user_id_for(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"

    def check_username(self, username: str) -> str:
        """Validate a requested localpart for a new account; return the user id."""
        localpart = username.lower()
        if not localpart or not is_valid_localpart(localpart, strict=True):
            raise MatrixError(
                400,
                "M_INVALID_USERNAME",
                "User ID may only contain a-z, 0-9, '.', '_', '=', '-', '/' and '+'",
            )
        if localpart.isdigit() or localpart.startswith("_"):
            raise MatrixError(400, "M_INVALID_USERNAME", "This user ID is reserved")
        user_id = self.user_id_for(localpart)
        if len(user_id.encode()) > MAX_USER_ID_LENGTH:
            raise MatrixError(400, "M_INVALID_USERNAME", "User ID is too long")
        if any(localpart.startswith(p) for p in self.config.registration.reserved_localparts):
            raise MatrixError(400, "M_EXCLUSIVE", "This user ID is reserved by an application")
        if self.exclusive_user_check is not None:
            self.exclusive_user_check(user_id)
        return user_id

    async def check_available(self, username: str) -> str:
        user_id = self.check_username(username)
        if await self.store.user_exists(user_id):
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken")
        return user_id

    async def resolve_login_user(self, user: str) -> str | None:
        """Map a login identifier (localpart or full id) to a local user id, or None."""
        if user.startswith("@"):
            localpart, sep, server = user[1:].partition(":")
            if not sep or server != self.server_name:
                return None
        else:
            localpart = user
        if not localpart or not is_valid_localpart(localpart, strict=False):
            return None
        return self.user_id_for(localpart.lower())

    # -------------------------------------------------------- registration

    async def create_account(
        self,
        user_id: str,
        password: str | None,
        *,
        is_admin: bool = False,
        is_guest: bool = False,
        displayname: str | None = None,
        password_hash: str | None = None,
    ) -> int:
        """Create a user with ``password`` (or an already hashed one, ``password_hash``)."""
        pw_hash = password_hash
        if password is not None:
            pw_hash = await self.hash_new_password(password)
        localpart = user_id[1:].split(":", 1)[0]
        try:
            return await self.store.create_user(
                user_id,
                pw_hash,
                is_admin=is_admin,
                is_guest=is_guest,
                displayname=displayname if displayname is not None else localpart,
                now=self.clock.now_ms(),
            )
        except UserExists:
            raise MatrixError(400, "M_USER_IN_USE", "User ID already taken") from None

    async def guest_to_upgrade(self, guest_token: str, username: str | None) -> Requester:
        """The guest that ``guest_token`` belongs to, if it may become the full account
        ``username`` (spec: registration with ``guest_access_token``: a guest keeps their
        user id). 403 for any other token or name."""
        try:
            guest = await self.auth.by_token(guest_token)
        except MatrixError:
            raise forbidden("Invalid guest access token") from None
        if not guest.is_guest:
            raise forbidden("The access token is not a guest's")
        if username is not None and guest.user_id[1:].split(":", 1)[0] != username:
            raise forbidden("A guest may only upgrade their own account")
        return guest

    async def upgrade_guest(self, guest: Requester, password_hash: str | None) -> None:
        await self.store.upgrade_guest(guest.user_nid, password_hash)
        self.auth.forget_user(guest.user_id)  # cached requesters still say is_guest

    async def hash_new_password(self, password: str) -> str:
        if len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
        return await self.passwords.hash(password)

    async def new_guest_user_id(self) -> str:
        while True:
            user_id = self.user_id_for(str(secrets.randbelow(10**12)).zfill(12))
            if not await self.store.user_exists(user_id):
                return user_id

    # --------------------------------------------------------------- login

    async def login_with_password(
        self,
        user_id: str | None,
        password: str,
        *,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
    ) -> Session:
        user = None if user_id is None else await self.store.get_user(user_id)
        ok = await self.check_user_password(user, password)
        if user is None or not ok or user.deactivated:
            raise forbidden("Invalid username or password")
        return await self.start_session(user, device_id, display_name, want_refresh)

    async def check_user_password(self, user: UserRecord | None, password: str) -> bool:
        """Check a password; a hash made under other argon2 parameters than the
        configured ones is replaced by a fresh one (the password is at hand only now)."""
        stored = None if user is None else user.password_hash
        if not await self.passwords.check(password, stored):
            return False
        if user is not None and stored and self.passwords.needs_rehash(stored):
            # Conditional on the old hash: a password change meanwhile wins.
            await self.store.replace_password_hash(
                user.user_nid, stored, await self.passwords.hash(password)
            )
        return True

    async def login_as(
        self,
        user_nid: int,
        *,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
    ) -> Session:
        """A session for an account already identified another way (a login token)."""
        user = await self.store.get_user_by_nid(user_nid)
        if user is None or user.deactivated:
            raise forbidden("Invalid login token")
        return await self.start_session(user, device_id, display_name, want_refresh)

    async def start_session(
        self,
        user: UserRecord,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
    ) -> Session:
        """Create (or reuse) a device and issue a fresh access token for it."""
        if device_id is not None and (not device_id or len(device_id) > MAX_DEVICE_ID_LENGTH):
            raise MatrixError(400, "M_INVALID_PARAM", "Invalid device_id")
        device_id = device_id or new_device_id()
        now = self.clock.now_ms()
        access = new_token("myl")
        refresh = new_token("mylr") if want_refresh else None
        lifetime = self.config.refreshable_access_token_lifetime_ms
        revoked: list[str] = []
        async with self.store.db.transaction() as txn:
            created = await self.store.ensure_device(
                txn, user.user_nid, device_id, display_name, now
            )
            if not created:
                # Spec (Relationship between access tokens and devices): a client that
                # sets device_id invalidates every token previously assigned to it.
                revoked = await self.store.delete_access_tokens_for_device(
                    txn, user.user_nid, device_id
                )
                await self.store.delete_refresh_tokens_for_device(txn, user.user_nid, device_id)
            await self.store.add_access_token(
                txn,
                hash_token(access),
                user.user_nid,
                device_id,
                now,
                now + lifetime if refresh else None,
            )
            if refresh is not None:
                await self.store.add_refresh_token(
                    txn, hash_token(refresh), user.user_nid, device_id, now
                )
        self.auth.forget(revoked)
        if created:
            for hook in self.device_created_hooks:
                await hook(user.user_id, [device_id])
        return Session(user.user_id, device_id, access, refresh, lifetime if refresh else None)

    async def refresh(self, refresh_token: str) -> Session:
        """Exchange a refresh token (single use) for a new access and refresh token."""
        now = self.clock.now_ms()
        lifetime = self.config.refreshable_access_token_lifetime_ms
        access = new_token("myl")
        refresh = new_token("mylr")
        async with self.store.db.transaction() as txn:
            found = await self.store.take_refresh_token(txn, hash_token(refresh_token))
            if found is None:
                raise MatrixError(401, "M_UNKNOWN_TOKEN", "Unknown or used refresh token")
            user_nid, device_id = found
            old = await self.store.delete_access_tokens_for_device(txn, user_nid, device_id)
            await self.store.add_access_token(
                txn, hash_token(access), user_nid, device_id, now, now + lifetime
            )
            await self.store.add_refresh_token(txn, hash_token(refresh), user_nid, device_id, now)
            user_id = await txn.fetchval("SELECT user_id FROM users WHERE user_nid = $1", user_nid)
        self.auth.forget(old)
        return Session(user_id, device_id, access, refresh, lifetime)

    # -------------------------------------------------------------- logout

    async def logout(self, requester: Requester) -> None:
        """Spec: logging out deletes the device that the token belongs to."""
        await self.delete_devices(requester.user_id, requester.user_nid, [requester.device_id])

    async def logout_all(self, requester: Requester) -> None:
        devices = await self.store.device_ids(requester.user_nid)
        await self.delete_devices(requester.user_id, requester.user_nid, devices)
        self.auth.forget_user(requester.user_id)

    # ------------------------------------------------- password, deactivate

    async def require_password(
        self, uia: UiaService, requester: Requester, auth: Any, operation: str
    ) -> None:
        """User-interactive auth with the user's password, for sensitive operations."""

        async def check(stage: str, auth_dict: dict[str, Any]) -> bool:
            return await self.verify_password_stage(requester, auth_dict)

        await uia.authenticate(
            auth,
            flows=[["m.login.password"]],
            operation=operation,
            user_nid=requester.user_nid,
            check_stage=check,
        )

    async def verify_password_stage(self, requester: Requester, auth: dict[str, Any]) -> bool:
        """The m.login.password UIA stage for an already logged-in user."""
        password = auth.get("password")
        if not isinstance(password, str):
            return False
        identifier = auth.get("identifier")
        claimed: Any = auth.get("user")
        if isinstance(identifier, dict) and identifier.get("type") == "m.id.user":
            claimed = identifier.get("user")
        if claimed is not None:
            if not isinstance(claimed, str):
                return False
            if await self.resolve_login_user(claimed) != requester.user_id:
                # Another user's credentials (a stolen access token?): refused outright,
                # not offered another try (as Synapse answers).
                raise forbidden("The authenticated user does not match the requester")
        user = await self.store.get_user(requester.user_id)
        return user is not None and await self.check_user_password(user, password)

    async def change_password(
        self, requester: Requester, new_password: str, logout_devices: bool
    ) -> None:
        if len(new_password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
        await self.store.set_password_hash(
            requester.user_nid, await self.passwords.hash(new_password)
        )
        if logout_devices:
            others = [
                d
                for d in await self.store.device_ids(requester.user_nid)
                if d != requester.device_id
            ]
            await self.delete_devices(requester.user_id, requester.user_nid, others)

    async def reset_password(self, user_nid: int, new_password: str, logout_devices: bool) -> None:
        """A password reset proven by email (no device of the user asked): with
        ``logout_devices`` every device is logged out."""
        user = await self.store.get_user_by_nid(user_nid)
        if user is None or user.deactivated:
            raise forbidden("This account cannot be used")
        await self.store.set_password_hash(user_nid, await self.hash_new_password(new_password))
        if logout_devices:
            await self.delete_devices(user.user_id, user_nid, await self.store.device_ids(user_nid))
            self.auth.forget_user(user.user_id)

    async def deactivate(self, user_id: str, erase: bool = False) -> None:
        """Deactivate; ``erase`` also erases what the user sent (``erased_hooks``)."""
        user = await self.store.get_user(user_id)
        if user is None:
            raise not_found("Unknown user")
        devices = await self.store.device_ids(user.user_nid)
        await self.store.deactivate(user.user_nid)
        self.auth.forget_user(user_id)
        for dhook in self.devices_deleted_hooks:
            await dhook(user_id, devices)
        for hook in self.deactivated_hooks:
            await hook(user_id)
        if erase:
            for ehook in self.erased_hooks:
                await ehook(user_id)

    # ------------------------------------------------------------- devices

    async def rename_device(
        self, user_id: str, user_nid: int, device_id: str, display_name: str | None
    ) -> None:
        """Set a device's display name; a change is announced as a device-list change."""
        device = await self.store.get_device(user_nid, device_id)
        if device is None:
            raise not_found("Unknown device")
        if device.display_name == display_name:
            return
        if not await self.store.set_device_display_name(user_nid, device_id, display_name):
            raise not_found("Unknown device")
        for hook in self.device_renamed_hooks:
            await hook(user_id, [device_id])

    async def delete_devices(self, user_id: str, user_nid: int, device_ids: list[str]) -> None:
        if not device_ids:
            return
        revoked = await self.store.delete_devices(user_nid, device_ids)
        self.auth.forget(revoked)
        for hook in self.devices_deleted_hooks:
            await hook(user_id, device_ids)

    # ------------------------------------------------------------- profile

    async def lookup_profile(self, user_id: str) -> dict[str, str]:
        """The public profile of any user, for the client API: a local user's from the store,
        a remote user's from their server (``M_NOT_FOUND`` when it cannot be had)."""
        _, sep, server = user_id.partition(":")
        if not sep or server == self.server_name:
            return await self.get_profile(user_id)
        if self.remote_profile_lookup is None or not user_id.startswith("@"):
            raise not_found("Profile not found")
        return await self.remote_profile_lookup(user_id)

    async def get_profile(self, user_id: str) -> dict[str, str]:
        """A local user's public profile (``M_NOT_FOUND`` for unknown or deactivated users)."""
        user = await self.store.get_user(user_id)
        if user is None and self.unknown_user_query is not None:
            if await self.unknown_user_query(user_id):
                user = await self.store.get_user(user_id)
        if user is None or user.deactivated:
            raise not_found("Profile not found")
        out = {}
        if user.displayname is not None:
            out["displayname"] = user.displayname
        if user.avatar_url is not None:
            out["avatar_url"] = user.avatar_url
        return out

    async def set_displayname(self, requester: Requester, displayname: str | None) -> None:
        if displayname is not None and len(displayname) > MAX_DISPLAYNAME_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "Display name is too long")
        await self.store.set_displayname(requester.user_nid, displayname or None)
        for hook in self.profile_changed_hooks:
            await hook(requester.user_id)

    async def set_avatar_url(self, requester: Requester, avatar_url: str | None) -> None:
        if avatar_url is not None and len(avatar_url) > MAX_AVATAR_URL_LENGTH:
            raise MatrixError(400, "M_INVALID_PARAM", "Avatar URL is too long")
        await self.store.set_avatar_url(requester.user_nid, avatar_url or None)
        for hook in self.profile_changed_hooks:
            await hook(requester.user_id)
