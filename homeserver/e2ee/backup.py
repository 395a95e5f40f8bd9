"""Server-side key backups (spec: "Server-side key backups", OpenAPI key_backup.yaml).

Versions are per user; keys may only be written to the latest version.
When a session is uploaded again, the spec's rules decide which copy stays
(``should_replace``). ``etag`` changes whenever the stored keys change.
session_data and auth_data are opaque and never inspected.
"""

from __future__ import annotations

from typing import Any

from homeserver.e2ee.backup_store import BackupKey, BackupStore, BackupVersion
from homeserver.errors import MatrixError, bad_json, invalid_param, not_found
from homeserver.storage.database import Database, Queries

ROOM_CHUNK = 500


def should_replace(existing: BackupKey | None, new: BackupKey) -> bool:
    """Spec "Server-side key backups": keep the verified key; then the lower
    first_message_index; then the lower forwarded_count."""
    if existing is None:
        return True
    if existing.is_verified != new.is_verified:
        return new.is_verified
    if existing.first_message_index != new.first_message_index:
        return new.first_message_index < existing.first_message_index
    return new.forwarded_count < existing.forwarded_count


def parse_version(raw: str | None) -> int | None:
    """Version strings are the decimal numbers we hand out; anything else is unknown."""
    if raw is None or not raw.isdigit() or len(raw) > 18:
        return None
    return int(raw)


def unknown_version() -> MatrixError:
    return not_found("Unknown backup version")


def parse_key_data(room_id: str, session_id: str, data: Any) -> BackupKey:
    """One KeyBackupData object (all four fields required)."""
    if not isinstance(data, dict):
        raise bad_json("Key data must be an object")
    fmi = data.get("first_message_index")
    fwd = data.get("forwarded_count")
    verified = data.get("is_verified")
    session_data = data.get("session_data")
    for value, name in ((fmi, "first_message_index"), (fwd, "forwarded_count")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad_json(f"'{name}' must be a non-negative integer")
    if not isinstance(verified, bool):
        raise bad_json("'is_verified' must be a boolean")
    if session_data is None:
        # Opaque, algorithm-dependent data: any JSON is kept as given (Synapse does too).
        raise bad_json("'session_data' is required")
    assert isinstance(fmi, int) and isinstance(fwd, int)
    return BackupKey(room_id, session_id, fmi, fwd, verified, session_data)


class KeyBackupService:
    def __init__(self, db: Database, store: BackupStore) -> None:
        self.db = db
        self.store = store

    # -------------------------------------------------------------- versions

    async def create_version(self, user_id: str, algorithm: Any, auth_data: Any) -> str:
        _check_algorithm(algorithm, auth_data)
        return str(await self.store.create(user_id, algorithm, auth_data))

    async def version_info(self, user_id: str, raw_version: str | None) -> dict[str, Any]:
        """GET /room_keys/version[/{version}]: latest when ``raw_version`` is None."""
        if raw_version is None:
            info = await self.store.latest(self.db, user_id)
            if info is None:
                raise not_found("No current backup version")
        else:
            info = await self._existing(user_id, raw_version)
        return {
            "algorithm": info.algorithm,
            "auth_data": info.auth_data,
            "count": await self.store.count(self.db, info.version),
            "etag": str(info.etag),
            "version": str(info.version),
        }

    async def update_version(
        self, user_id: str, raw_version: str, algorithm: Any, auth_data: Any, body_version: Any
    ) -> None:
        info = await self._existing(user_id, raw_version)
        if body_version is not None and body_version != raw_version:
            raise invalid_param("'version' in the body does not match the path")
        if algorithm != info.algorithm:
            raise invalid_param("Algorithm does not match")
        _check_algorithm(algorithm, auth_data)
        await self.store.update_auth_data(info.version, auth_data)

    async def delete_version(self, user_id: str, raw_version: str) -> None:
        version = parse_version(raw_version)
        info = None if version is None else await self.store.get(self.db, user_id, version)
        if info is None:
            raise unknown_version()
        if not info.deleted:  # deleting a deleted backup again succeeds
            await self.store.mark_deleted(info.version)

    async def _existing(self, user_id: str, raw_version: str) -> BackupVersion:
        version = parse_version(raw_version)
        info = None if version is None else await self.store.get(self.db, user_id, version)
        if info is None or info.deleted:
            raise unknown_version()
        return info

    # ------------------------------------------------------------------ keys

    async def put_keys(
        self, user_id: str, raw_version: str | None, keys: list[BackupKey]
    ) -> dict[str, Any]:
        """Store keys in the current version following the replacement rules."""
        if raw_version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "'version' is required")
        async with self.db.transaction() as txn:
            latest = await self.store.latest(txn, user_id)
            if latest is None:
                raise unknown_version()
            if parse_version(raw_version) != latest.version:
                raise MatrixError(
                    403,
                    "M_WRONG_ROOM_KEYS_VERSION",
                    "Wrong backup version.",
                    current_version=str(latest.version),
                )
            await self.store.lock_version(txn, latest.version)
            rooms = sorted({k.room_id for k in keys})
            existing: dict[tuple[str, str], BackupKey] = {}
            for i in range(0, len(rooms), ROOM_CHUNK):
                existing.update(
                    await self.store.keys_in_rooms(txn, latest.version, rooms[i : i + ROOM_CHUNK])
                )
            chosen: dict[tuple[str, str], BackupKey] = {}
            for k in keys:
                slot = (k.room_id, k.session_id)
                if should_replace(chosen.get(slot, existing.get(slot)), k):
                    chosen[slot] = k
            if chosen:
                await self.store.put_keys(txn, latest.version, list(chosen.values()))
                await self.store.bump_etag(txn, latest.version)
            return await self._summary(txn, latest.version)

    async def get_keys(
        self, user_id: str, raw_version: str | None, room_id: str | None, session_id: str | None
    ) -> list[BackupKey]:
        info = await self._existing_required(user_id, raw_version)
        return await self.store.keys(self.db, info.version, room_id, session_id)

    async def delete_keys(
        self, user_id: str, raw_version: str | None, room_id: str | None, session_id: str | None
    ) -> dict[str, Any]:
        info = await self._existing_required(user_id, raw_version)
        async with self.db.transaction() as txn:
            await self.store.lock_version(txn, info.version)
            if await self.store.delete_keys(txn, info.version, room_id, session_id):
                await self.store.bump_etag(txn, info.version)
            return await self._summary(txn, info.version)

    async def _existing_required(self, user_id: str, raw_version: str | None) -> BackupVersion:
        if raw_version is None:
            raise MatrixError(400, "M_MISSING_PARAM", "'version' is required")
        return await self._existing(user_id, raw_version)

    async def _summary(self, txn: Queries, version: int) -> dict[str, Any]:
        etag = await self.store.etag(txn, version)
        return {"etag": str(etag), "count": await self.store.count(txn, version)}

    async def on_deactivated(self, user_id: str) -> None:
        await self.store.delete_user(user_id)


def _check_algorithm(algorithm: Any, auth_data: Any) -> None:
    """The algorithm is an opaque string and auth_data opaque, algorithm-dependent data
    (spec: "Server-side key backups"): the server stores both as given. The spec shows
    auth_data as an object, but nothing requires refusing other JSON, and Synapse keeps
    it whatever it is; only its absence is an error."""
    if not isinstance(algorithm, str) or not algorithm:
        raise bad_json("'algorithm' must be a string")
    if auth_data is None:
        raise bad_json("'auth_data' is required")
