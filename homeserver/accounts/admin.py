"""Server admins managing local accounts (Synapse's user admin API, and the CLI).

Every change goes through ``AccountService`` where one exists (deactivation
runs the same hooks as a user deactivating themselves: rooms are left,
devices and their keys dropped), so an admin action and a user action
never differ in their side effects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.admin_store import UserAdminStore, UserQuery, UserRow
from homeserver.accounts.service import (
    MAX_AVATAR_URL_LENGTH,
    MAX_DISPLAYNAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    AccountService,
)
from homeserver.accounts.store import DeviceRecord, UserRecord
from homeserver.accounts.threepids import EMAIL, ThreepidService, canonical_email
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id


def user_json(u: UserRow, *, creation_ts_ms: bool) -> dict[str, Any]:
    """Synapse's user shape: 0/1 flags, ``erased``/``locked`` booleans.

    Synapse lists users with ``creation_ts`` in milliseconds but answers one
    user with seconds; both are kept so existing scripts read them right."""
    return {
        "name": u.user_id,
        "displayname": u.displayname,
        "avatar_url": u.avatar_url,
        "threepids": [],
        "external_ids": [],
        "is_guest": int(u.is_guest),
        "admin": int(u.is_admin),
        "deactivated": int(u.deactivated),
        "erased": u.erased,
        "shadow_banned": 0,
        "locked": False,
        "approved": True,
        "user_type": None,
        "appservice_id": None,
        "consent_server_notice_sent": None,
        "consent_version": None,
        "consent_ts": None,
        "creation_ts": u.created_ts if creation_ts_ms else u.created_ts // 1000,
        "last_seen_ts": u.last_seen_ts,
    }


@dataclass(frozen=True, slots=True)
class UserChanges:
    """A checked PUT /_synapse/admin/v2/users/{userId} body (absent: unchanged)."""

    password: str | None = None
    set_password: bool = False
    logout_devices: bool = True
    displayname: str | None = None
    set_displayname: bool = False
    avatar_url: str | None = None
    set_avatar_url: bool = False
    admin: bool | None = None
    deactivated: bool | None = None
    # The account's whole set of (medium, address) after the change; None: unchanged.
    threepids: list[tuple[str, str]] | None = None


class UserAdmin:
    def __init__(
        self, accounts: AccountService, store: UserAdminStore, threepids: ThreepidService
    ) -> None:
        self.accounts = accounts
        self.store = store
        self.threepids = threepids

    def local_user_id(self, user_id: str) -> str:
        """A valid user id of this server, or 400 M_INVALID_PARAM."""
        if not is_valid_user_id(user_id):
            raise invalid_param(f"{user_id!r} is not a valid user id")
        if user_id.split(":", 1)[1] != self.accounts.server_name:
            raise invalid_param("Only local users can be managed here")
        return user_id

    async def _record(self, user_id: str) -> UserRecord:
        user = await self.accounts.store.get_user(self.local_user_id(user_id))
        if user is None:
            raise not_found("User not found")
        return user

    async def list_users(self, query: UserQuery) -> tuple[list[dict[str, Any]], int]:
        rows, total = await self.store.list_users(query)
        return [user_json(r, creation_ts_ms=True) for r in rows], total

    async def get_user(self, user_id: str) -> dict[str, Any]:
        row = await self.store.get_user(self.local_user_id(user_id))
        if row is None:
            raise not_found("User not found")
        out = user_json(row, creation_ts_ms=False)
        out["threepids"] = await self.threepids.list_for((await self._record(user_id)).user_nid)
        return out

    async def upsert_user(self, user_id: str, changes: UserChanges) -> tuple[dict[str, Any], bool]:
        """Create or modify a local account; (user, created)."""
        user_id = self.local_user_id(user_id)
        user = await self.accounts.store.get_user(user_id)
        created = user is None
        if user is None:
            localpart = user_id[1:].split(":", 1)[0]
            if self.accounts.check_username(localpart) != user_id:
                raise invalid_param("User ids of new accounts must be lower case")
            await self.accounts.create_account(
                user_id,
                changes.password if changes.set_password else None,
                is_admin=bool(changes.admin),
                displayname=changes.displayname if changes.set_displayname else None,
            )
            user = await self._record(user_id)
            if changes.set_avatar_url and changes.avatar_url:
                await self.accounts.store.set_avatar_url(user.user_nid, changes.avatar_url)
            if changes.threepids is not None:
                await self.set_threepids(user, changes.threepids)
            if changes.deactivated:
                await self.accounts.deactivate(user_id)
            return await self.get_user(user_id), created
        await self._modify(user, changes)
        return await self.get_user(user_id), created

    async def _modify(self, user: UserRecord, changes: UserChanges) -> None:
        if changes.deactivated is False and user.deactivated:
            if not changes.set_password or changes.password is None:
                raise invalid_param("Must provide a password to re-activate an account")
            await self.store.reactivate(
                user.user_nid, user.user_id, await self.accounts.passwords.hash(changes.password)
            )
            user = await self._record(user.user_id)
        elif changes.set_password:
            await self.set_password(user.user_id, changes.password, changes.logout_devices)
        if changes.admin is not None and changes.admin != user.is_admin:
            await self.accounts.store.set_admin(user.user_nid, changes.admin)
            self.accounts.auth.forget_user(user.user_id)  # cached sessions carry is_admin
        if changes.set_displayname or changes.set_avatar_url:
            if changes.set_displayname:
                await self.accounts.store.set_displayname(user.user_nid, changes.displayname)
            if changes.set_avatar_url:
                await self.accounts.store.set_avatar_url(user.user_nid, changes.avatar_url)
            if not user.deactivated:
                for hook in self.accounts.profile_changed_hooks:
                    await hook(user.user_id)
        if changes.threepids is not None:
            await self.set_threepids(user, changes.threepids)
        if changes.deactivated is True and not user.deactivated:
            await self.accounts.deactivate(user.user_id)

    async def set_threepids(self, user: UserRecord, wanted: list[tuple[str, str]]) -> None:
        """Synapse's PUT ``threepids``: the account ends up with exactly these addresses
        (taken as validated now; one held by another account is M_THREEPID_IN_USE)."""
        now = self.accounts.clock.now_ms()
        for medium, address in wanted:
            owner = await self.threepids.owner_of(medium, address)
            if owner is not None and owner != user.user_nid:
                raise MatrixError(400, "M_THREEPID_IN_USE", f"{address} belongs to another user")
        for current in await self.threepids.list_for(user.user_nid):
            if (current["medium"], current["address"]) not in wanted:
                await self.threepids.store.remove(
                    user.user_nid, current["medium"], current["address"]
                )
        for medium, address in wanted:
            await self.threepids.add(user.user_nid, medium, address, now)

    async def set_password(self, user_id: str, password: str | None, logout_devices: bool) -> None:
        """Set (or with None, remove) a password; optionally log every device out."""
        user = await self._record(user_id)
        if password is not None and len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
        pw_hash = None if password is None else await self.accounts.passwords.hash(password)
        await self.accounts.store.set_password_hash(user.user_nid, pw_hash)
        if logout_devices:
            devices = await self.accounts.store.device_ids(user.user_nid)
            await self.accounts.delete_devices(user.user_id, user.user_nid, devices)
            self.accounts.auth.forget_user(user.user_id)

    async def deactivate(self, user_id: str, erase: bool) -> None:
        """Deactivate (idempotent); ``erase`` also erases the account: it is marked
        erased and the events it sent are stored pruned (``erased_hooks``)."""
        user = await self._record(user_id)
        await self.accounts.deactivate(user.user_id, erase=erase)

    async def mark_erased(self, user_id: str) -> None:
        """The first erased hook: the account shows as erased before its events are pruned."""
        await self.store.mark_erased(user_id, self.accounts.clock.now_ms())

    async def whois(self, user_id: str) -> dict[str, Any]:
        """Spec "Server administration": the user's devices and their last connection."""
        await self._record(user_id)
        devices: dict[str, Any] = {}
        for device_id, ip, ts, user_agent in await self.store.device_sessions(user_id):
            connections = []
            if ip is not None or ts is not None:
                conn: dict[str, Any] = {}
                if ip is not None:
                    conn["ip"] = ip
                if ts is not None:
                    conn["last_seen"] = ts
                if user_agent is not None:
                    conn["user_agent"] = user_agent
                connections.append(conn)
            devices[device_id] = {"sessions": [{"connections": connections}]}
        return {"user_id": user_id, "devices": devices}

    async def devices(self, user_id: str) -> list[dict[str, Any]]:
        user = await self._record(user_id)
        return [
            _device_json(user.user_id, d)
            for d in await self.accounts.store.list_devices(user.user_nid)
        ]

    async def device(self, user_id: str, device_id: str) -> dict[str, Any]:
        user = await self._record(user_id)
        found = await self.accounts.store.get_device(user.user_nid, device_id)
        if found is None:
            raise not_found("Device not found")
        return _device_json(user.user_id, found)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Log devices out (unknown ids are ignored, as Synapse does)."""
        user = await self._record(user_id)
        known = set(await self.accounts.store.device_ids(user.user_nid))
        await self.accounts.delete_devices(
            user.user_id, user.user_nid, [d for d in device_ids if d in known]
        )

    async def is_admin(self, user_id: str) -> bool:
        return (await self._record(user_id)).is_admin

    async def set_admin(self, user_id: str, admin: bool) -> None:
        user = await self._record(user_id)
        await self.accounts.store.set_admin(user.user_nid, admin)
        self.accounts.auth.forget_user(user.user_id)


def _device_json(user_id: str, d: DeviceRecord) -> dict[str, Any]:
    return {
        "device_id": d.device_id,
        "display_name": d.display_name,
        "last_seen_ip": d.last_seen_ip,
        "last_seen_ts": d.last_seen_ts,
        "last_seen_user_agent": None,
        "user_id": user_id,
    }


def _parse_threepids(value: Any) -> list[tuple[str, str]]:
    """``[{medium, address}]``; only email (this server has no way to check phones)."""
    if not isinstance(value, list):
        raise invalid_param("threepids must be a list")
    out: list[tuple[str, str]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("address"), str):
            raise invalid_param("each threepid needs a medium and an address")
        if item.get("medium") != EMAIL:
            raise invalid_param("only the email medium is supported")
        pair = (EMAIL, canonical_email(item["address"]))
        if pair not in out:
            out.append(pair)
    return out


def parse_user_changes(body: dict[str, Any]) -> UserChanges:
    """Check a PUT body field by field (Synapse's names); external ids are refused."""
    value = body.get("external_ids")
    if value is not None and (not isinstance(value, list) or value):
        raise invalid_param("external_ids are not supported by this server")
    fields: dict[str, Any] = {}
    if body.get("threepids") is not None:
        fields["threepids"] = _parse_threepids(body["threepids"])
    if "password" in body:
        password = body["password"]
        if password is not None and (not isinstance(password, str) or not password):
            raise invalid_param("password must be a non-empty string or null")
        if isinstance(password, str) and len(password) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "M_WEAK_PASSWORD", "Password is too long")
        fields.update(password=password, set_password=True)
    if "logout_devices" in body:
        if not isinstance(body["logout_devices"], bool):
            raise invalid_param("logout_devices must be a boolean")
        fields["logout_devices"] = body["logout_devices"]
    for key, limit in (
        ("displayname", MAX_DISPLAYNAME_LENGTH),
        ("avatar_url", MAX_AVATAR_URL_LENGTH),
    ):
        if key in body:
            value = body[key]
            if value is not None and not isinstance(value, str):
                raise invalid_param(f"{key} must be a string or null")
            if isinstance(value, str) and (len(value) > limit or "\x00" in value):
                raise invalid_param(f"{key} is too long or contains NUL")
            fields.update({key: value or None, f"set_{key}": True})
    for key in ("admin", "deactivated"):
        if key in body:
            if not isinstance(body[key], bool):
                raise invalid_param(f"{key} must be a boolean")
            fields[key] = body[key]
    for key in ("locked", "user_type"):
        if body.get(key) not in (None, False):
            raise invalid_param(f"{key} is not supported by this server")
    return UserChanges(**fields)
