"""Device keys, one-time and fallback keys, /keys/query, /keys/claim and the
device-list stream (spec: "End-to-End Encryption", "Key management API").

Remote users are answered through ``RemoteKeys`` (federation); until it is
wired, ``NoRemoteKeys`` reports each remote server in ``failures``.
Key material is stored and returned as opaque JSON and never logged.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.e2ee.cross_signing_store import CrossSigningStore
from homeserver.e2ee.device_keys_store import DeviceKeysStore, DuplicateOneTimeKey
from homeserver.e2ee.interfaces import (
    DeviceListHook,
    RemoteKeys,
    RemoteUnavailable,
    SharedRoomsLookup,
)
from homeserver.e2ee.signed_json import check_device_keys, check_key_object
from homeserver.e2ee.streams import DEVICE_LISTS, current
from homeserver.errors import bad_json, invalid_param
from homeserver.events.identifiers import is_valid_user_id
from homeserver.storage.database import Database

DEFAULT_REMOTE_TIMEOUT_MS = 10_000
MAX_REMOTE_TIMEOUT_MS = 60_000
MAX_UPLOAD_KEYS = 1000


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def _failure(reason: str) -> dict[str, Any]:
    return {"status": 503, "message": reason}


DepartedLookup = Callable[[str, int, int], Awaitable[set[str]]]


def sync_counts(counts: dict[str, int]) -> dict[str, int]:
    """``device_one_time_keys_count`` as /sync answers it: signed_curve25519 always
    (clients top up from zero), with the counts read."""
    return {"signed_curve25519": 0, **counts}


class KeysService:
    def __init__(
        self,
        db: Database,
        server_name: str,
        store: DeviceKeysStore,
        cross_signing: CrossSigningStore,
        remote: RemoteKeys,
        users_sharing_room_with: SharedRoomsLookup,
        departed_room_mates: DepartedLookup,
        arrived_room_mates: DepartedLookup,
    ) -> None:
        self.db = db
        self.server_name = server_name
        self.store = store
        self.cs_store = cross_signing
        # Federation's side of /keys/query and /keys/claim. The composition root replaces
        # it once federation is built: federation needs this service first (its /user/keys
        # routes and device-list EDUs), a real cycle, so this one field is bound late.
        self.remote = remote
        self.users_sharing_room_with = users_sharing_room_with
        # (user_id, since, upto event positions) -> users who stopped sharing any room.
        self.departed_room_mates = departed_room_mates
        # The same -> users who newly share a room (/keys/changes "changed").
        self.arrived_room_mates = arrived_room_mates
        # Called after the device list of a user changed (notifier, federation).
        self.device_list_hooks: list[DeviceListHook] = []

    def is_local(self, user_id: str) -> bool:
        return server_of(user_id) == self.server_name

    async def notify_device_list(self, user_id: str, device_ids: list[str]) -> None:
        for hook in self.device_list_hooks:
            await hook(user_id, device_ids)

    # ---------------------------------------------------------------- upload

    async def upload(self, user_id: str, device_id: str, body: dict[str, Any]) -> dict[str, int]:
        """POST /keys/upload; returns ``one_time_key_counts``."""
        device_keys = body.get("device_keys")
        checked = None
        if device_keys is not None:
            checked = check_device_keys(device_keys, user_id, device_id)
        otks = _key_rows(body.get("one_time_keys"), "one_time_keys")
        fallbacks = _key_rows(body.get("fallback_keys"), "fallback_keys")
        if len({alg for alg, _, _ in fallbacks}) != len(fallbacks):
            raise invalid_param("At most one fallback key per algorithm may be uploaded")
        changed = False
        async with self.db.transaction() as txn:
            if checked is not None:
                ed25519, curve25519 = checked
                # New identity keys for a known device replace the old ones and are
                # announced like any change: the spec leaves trusting them to clients
                # (which see the device list change), and Synapse accepts them too.
                old = await self.store.get_device_keys(txn, user_id, device_id)
                if old is None or json.loads(old[2]) != device_keys:
                    await self.store.put_device_keys(
                        txn, user_id, device_id, ed25519, curve25519, json.dumps(device_keys)
                    )
                    await self.store.bump_device_list(txn, user_id, [device_id])
                    changed = True
            try:
                await self.store.add_one_time_keys(txn, user_id, device_id, otks)
            except DuplicateOneTimeKey as e:
                raise invalid_param(
                    f"One-time key {e} already exists with different content"
                ) from None
            for algorithm, key_id, key_json in fallbacks:
                await self.store.set_fallback_key(
                    txn, user_id, device_id, algorithm, key_id, key_json
                )
            counts = await self.store.one_time_key_counts(txn, user_id, device_id)
        if changed:
            await self.notify_device_list(user_id, [device_id])
        return {"signed_curve25519": 0, **counts}

    # ----------------------------------------------------------------- query

    async def query(
        self, requester_id: str, device_keys: dict[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        """POST /keys/query for local users, remote ones through ``RemoteKeys``."""
        local = [u for u in device_keys if self.is_local(u)]
        answer = await self.query_local(requester_id, {u: device_keys[u] for u in local})
        answer["failures"] = {}
        remote: dict[str, dict[str, list[str]]] = {}
        for user_id, devices in device_keys.items():
            if not self.is_local(user_id):
                remote.setdefault(server_of(user_id), {})[user_id] = devices
        if remote:
            results = await asyncio.gather(
                *(self._query_remote(s, q, timeout_ms) for s, q in remote.items())
            )
            for server, result in zip(remote, results, strict=True):
                if isinstance(result, str):
                    answer["failures"][server] = _failure(result)
                    continue
                for field in ("device_keys", "master_keys", "self_signing_keys"):
                    got = result.get(field)
                    if isinstance(got, dict):
                        answer[field].update({u: v for u, v in got.items() if u in remote[server]})
        return answer

    async def _query_remote(
        self, server: str, query: dict[str, list[str]], timeout_ms: int
    ) -> dict[str, Any] | str:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await self.remote.query_keys(server, query, timeout_ms)
        except RemoteUnavailable as e:
            return e.reason
        except TimeoutError:
            return "Timed out waiting for the remote server"

    async def query_local(
        self, requester_id: str, device_keys: dict[str, list[str]]
    ) -> dict[str, Any]:
        """Device and cross-signing keys of local users, with the signatures
        ``requester_id`` may see (the owner's own, and the requester's)."""
        users = list(device_keys)
        stored = await self.store.query_device_keys(users)
        cs_keys = await self.cs_store.keys_of_users(users)
        sigs = await self.cs_store.signatures_on(users, [*users, requester_id])
        extra: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
        for s in sigs:
            if s.signer_user_id in (s.target_user_id, requester_id):
                by_signer = extra.setdefault((s.target_user_id, s.target_key_id), {})
                by_signer.setdefault(s.signer_user_id, {})[s.signer_key_id] = s.signature
        out: dict[str, Any] = {
            "device_keys": {u: {} for u in users},
            "master_keys": {},
            "self_signing_keys": {},
            "user_signing_keys": {},
        }
        for d in stored:
            wanted = device_keys[d.user_id]
            if wanted and d.device_id not in wanted:
                continue
            keys = _with_signatures(d.keys, extra.get((d.user_id, d.device_id)))
            keys["unsigned"] = {"device_display_name": d.display_name} if d.display_name else {}
            out["device_keys"][d.user_id][d.device_id] = keys
        for user_id, by_usage in cs_keys.items():
            for usage, key in by_usage.items():
                if usage == "user_signing" and user_id != requester_id:
                    continue
                public = next(iter(key.get("keys", {}).values()), "")
                out[f"{usage}_keys"][user_id] = _with_signatures(key, extra.get((user_id, public)))
        return out

    # ----------------------------------------------------------------- claim

    async def claim(self, wanted: dict[str, dict[str, str]], timeout_ms: int) -> dict[str, Any]:
        """POST /keys/claim: one key per (user, device, algorithm); remote through RemoteKeys."""
        one_time_keys: dict[str, Any] = {}
        failures: dict[str, Any] = {}
        local = {u: d for u, d in wanted.items() if self.is_local(u)}
        async with self.db.transaction() as txn:
            for user_id, devices in local.items():
                for device_id, algorithm in devices.items():
                    got = await self.store.claim_one_time_key(txn, user_id, device_id, algorithm)
                    if got is None:
                        got = await self.store.claim_fallback_key(
                            txn, user_id, device_id, algorithm
                        )
                    if got is not None:
                        key_id, key = got
                        one_time_keys.setdefault(user_id, {})[device_id] = {
                            f"{algorithm}:{key_id}": key
                        }
        remote: dict[str, dict[str, dict[str, str]]] = {}
        for user_id, devices in wanted.items():
            if not self.is_local(user_id):
                remote.setdefault(server_of(user_id), {})[user_id] = devices
        results = await asyncio.gather(
            *(self._claim_remote(s, q, timeout_ms) for s, q in remote.items())
        )
        for server, result in zip(remote, results, strict=True):
            if isinstance(result, str):
                failures[server] = _failure(result)
                continue
            got_keys = result.get("one_time_keys")
            if isinstance(got_keys, dict):
                one_time_keys.update({u: v for u, v in got_keys.items() if u in remote[server]})
        return {"one_time_keys": one_time_keys, "failures": failures}

    async def _claim_remote(
        self, server: str, query: dict[str, dict[str, str]], timeout_ms: int
    ) -> dict[str, Any] | str:
        try:
            async with asyncio.timeout(timeout_ms / 1000):
                return await self.remote.claim_keys(server, query, timeout_ms)
        except RemoteUnavailable as e:
            return e.reason
        except TimeoutError:
            return "Timed out waiting for the remote server"

    # ------------------------------------------------------ device lists, sync

    async def current_device_list_pos(self) -> int:
        return await current(self.db, DEVICE_LISTS)

    async def device_list_changes(self, user_id: str, from_pos: int, to_pos: int) -> set[str]:
        """Users whose devices or cross-signing keys changed in (from_pos, to_pos] and who
        share a room with ``user_id`` (or are ``user_id``)."""
        if to_pos <= from_pos:
            return set()
        changed = await self.store.users_changed_between(from_pos, to_pos, user_id)
        if not changed:
            return set()
        visible = await self.users_sharing_room_with(user_id)
        return {u for u in changed if u == user_id or u in visible}

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        counts = await self.store.one_time_key_counts(self.db, user_id, device_id)
        return {"signed_curve25519": 0, **counts}

    async def sync_key_counts(
        self, user_id: str, device_id: str
    ) -> tuple[dict[str, int], list[str]]:
        """(``one_time_key_counts``, ``unused_fallback_key_types``), read together."""
        counts, fallback = await self.store.sync_key_counts(self.db, user_id, device_id)
        return sync_counts(counts), fallback

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        return await self.store.unused_fallback_key_types(self.db, user_id, device_id)

    async def device_list(self, user_id: str) -> dict[str, dict[str, Any]]:
        """Every device of a local user as an ``m.device_list_update`` describes it:
        device id -> ``device_display_name`` (if set) and ``keys`` (once uploaded,
        with the owner's signatures)."""
        names = await self.device_names(user_id)
        found = await self.query_local("", {user_id: []})
        out: dict[str, dict[str, Any]] = {}
        for device_id, name in names.items():
            entry: dict[str, Any] = {}
            if name is not None:
                entry["device_display_name"] = name
            keys = found["device_keys"].get(user_id, {}).get(device_id)
            if keys is not None:
                entry["keys"] = {k: v for k, v in keys.items() if k != "unsigned"}
            out[device_id] = entry
        return out

    async def device_names(self, user_id: str) -> dict[str, str | None]:
        return await self.store.device_names(user_id)

    async def on_device_created(self, user_id: str, device_ids: list[str]) -> None:
        """AccountService hook: a new login is a device-list change (spec: "Tracking the
        device list for a user"), announced before the device has uploaded any keys."""
        async with self.db.transaction() as txn:
            await self.store.bump_device_list(txn, user_id, device_ids)
        await self.notify_device_list(user_id, device_ids)

    async def on_device_renamed(self, user_id: str, device_ids: list[str]) -> None:
        """AccountService hook: the display name is part of the device's /keys/query
        entry, so a rename is a device-list change too."""
        async with self.db.transaction() as txn:
            await self.store.bump_device_list(txn, user_id, device_ids)
        await self.notify_device_list(user_id, device_ids)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """AccountService hook: drop the devices' keys; announce the change (every
        device, with keys or not: its creation was announced too)."""
        async with self.db.transaction() as txn:
            await self.store.delete_devices(txn, user_id, device_ids)
            await self.store.bump_device_list(txn, user_id, device_ids)
        await self.notify_device_list(user_id, device_ids)


def _with_signatures(
    obj: dict[str, Any], extra: dict[str, dict[str, str]] | None
) -> dict[str, Any]:
    """A copy of a signed object with stored signatures merged into ``signatures``."""
    out = dict(obj)
    sigs = obj.get("signatures")
    merged = (
        {k: dict(v) for k, v in sigs.items() if isinstance(v, dict)}
        if isinstance(sigs, dict)
        else {}
    )
    for signer, by_key in (extra or {}).items():
        merged.setdefault(signer, {}).update(by_key)
    if merged or "signatures" in obj:
        out["signatures"] = merged  # an object uploaded without any stays without
    return out


def _key_rows(obj: Any, field: str) -> list[tuple[str, str, str]]:
    """(algorithm, key_id, key_json) rows of a one_time_keys / fallback_keys object."""
    if obj is None:
        return []
    if not isinstance(obj, dict):
        raise bad_json(f"'{field}' must be an object")
    if len(obj) > MAX_UPLOAD_KEYS:
        raise invalid_param(f"Too many keys in '{field}'")
    rows = []
    for name, value in obj.items():
        algorithm, key_id = check_key_object(name, value)
        rows.append((algorithm, key_id, json.dumps(value)))
    return rows


def check_user_map(obj: Any, field: str) -> dict[str, Any]:
    """A request map keyed by user id; user ids must be valid."""
    if not isinstance(obj, dict):
        raise bad_json(f"'{field}' must be an object")
    for user_id in obj:
        if not isinstance(user_id, str) or not is_valid_user_id(user_id, strict=False):
            raise invalid_param(f"'{field}' holds an invalid user id")
    return obj
