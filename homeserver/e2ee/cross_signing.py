"""Cross-signing: /keys/device_signing/upload and /keys/signatures/upload
(spec: "Cross-signing", OpenAPI cross_signing.yaml).

Whether user-interactive auth is needed is decided here
(``needs_interactive_auth``) and performed by the HTTP handler: the spec
lets a client upload keys without UIA when there is no master key yet, or
when the request only repeats the keys already stored.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.e2ee.cross_signing_store import CrossSigningStore, StoredSignature
from homeserver.e2ee.device_keys_store import DeviceKeysStore
from homeserver.e2ee.interfaces import DeviceListHook
from homeserver.e2ee.signed_json import (
    CROSS_SIGNING_USAGES,
    check_cross_signing_key,
    has_valid_signature,
    invalid_signature,
    same_signed_object,
    signatures_by,
)
from homeserver.errors import MatrixError, forbidden, missing_param
from homeserver.storage.database import Database


def _err(errcode: str, error: str) -> dict[str, str]:
    return {"errcode": errcode, "error": error}


def _public_key(key: dict[str, Any]) -> str:
    value = next(iter(key.get("keys", {}).values()), "")
    return value if isinstance(value, str) else ""


class CrossSigningService:
    def __init__(
        self, db: Database, store: CrossSigningStore, device_keys: DeviceKeysStore
    ) -> None:
        self.db = db
        self.store = store
        self.device_keys = device_keys
        # Called after cross-signing keys or signatures changed: (user_id, []).
        self.device_list_hooks: list[DeviceListHook] = []

    async def _notify(self, user_id: str) -> None:
        for hook in self.device_list_hooks:
            await hook(user_id, [])

    def parse_upload(self, user_id: str, body: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """usage -> key object of the keys present in the body (shape checked)."""
        keys = {}
        for usage in CROSS_SIGNING_USAGES:
            obj = body.get(f"{usage}_key")
            if obj is not None:
                check_cross_signing_key(obj, user_id, usage)
                keys[usage] = obj
        return keys

    async def needs_interactive_auth(self, user_id: str, keys: dict[str, dict[str, Any]]) -> bool:
        """Spec: UIA is required unless there is no master key yet, or the request
        holds no new key (every key given equals the stored one)."""
        stored = await self.store.keys_of(self.db, user_id)
        if "master" not in stored:
            return False
        return any(
            usage not in stored or not same_signed_object(stored[usage], key)
            for usage, key in keys.items()
        )

    async def upload_keys(self, user_id: str, keys: dict[str, dict[str, Any]]) -> None:
        """Store the cross-signing keys after the checks of the spec (UIA already done)."""
        async with self.db.transaction() as txn:
            stored = await self.store.keys_of(txn, user_id)
            master = keys.get("master", stored.get("master"))
            if master is None:
                raise missing_param("No master signing key is available")
            master_pub = _public_key(master)
            device_ids = {
                r[0]
                for r in await txn.fetchall(
                    "SELECT device_id FROM e2e_device_keys WHERE user_id = $1", user_id
                )
            }
            for usage, key in keys.items():
                if _public_key(key) in device_ids:
                    raise forbidden("Key ID in use")
                if usage != "master" and not has_valid_signature(
                    key, user_id, f"ed25519:{master_pub}", master_pub
                ):
                    raise invalid_signature(f"The {usage} key is not signed by the master key")
            changed: set[str] = set()
            for usage, key in keys.items():
                if usage in stored and same_signed_object(stored[usage], key):
                    if stored[usage] == key:
                        continue
                await self.store.put_key(txn, user_id, usage, _public_key(key), json.dumps(key))
                changed.add(usage)
            if changed:
                # Only the owner sees their user-signing key (spec /keys/query): a change
                # of it alone is not news for the users who share a room with them.
                await self.device_keys.bump_device_list(
                    txn, user_id, [], only_for=user_id if changed == {"user_signing"} else None
                )
        if changed:
            await self._notify(user_id)

    async def upload_signatures(
        self, requester_id: str, body: dict[str, Any]
    ) -> dict[str, dict[str, dict[str, str]]]:
        """POST /keys/signatures/upload; returns ``failures`` (user -> key id -> error)."""
        failures: dict[str, dict[str, dict[str, str]]] = {}
        accepted: list[StoredSignature] = []
        own = await self.store.keys_of(self.db, requester_id)
        for target_user, objects in body.items():
            if not isinstance(objects, dict):
                failures.setdefault(target_user, {})["*"] = _err(
                    "M_BAD_JSON", "Expected an object of signed keys"
                )
                continue
            for key_id, obj in objects.items():
                try:
                    if not isinstance(obj, dict):
                        raise MatrixError(400, "M_BAD_JSON", "The signed key must be an object")
                    if target_user == requester_id:
                        accepted += await self._own_signatures(requester_id, own, key_id, obj)
                    else:
                        accepted += await self._other_signature(
                            requester_id, own, target_user, key_id, obj
                        )
                except MatrixError as e:
                    failures.setdefault(target_user, {})[key_id] = _err(e.errcode, e.error)
        if accepted:
            # Our own devices signed by our self-signing key change those devices' keys
            # as others see them (m.device_list_update); any other signature changes
            # the cross-signing keys (m.signing_key_update).
            master_pub = _public_key(own["master"]) if "master" in own else None
            devices = sorted(
                {
                    s.target_key_id
                    for s in accepted
                    if s.target_user_id == requester_id and s.target_key_id != master_pub
                }
            )
            keys_changed = any(
                s.target_user_id == requester_id and s.target_key_id == master_pub for s in accepted
            )
            # Our user-signing key's signatures of other users' master keys are seen by
            # us alone (/keys/query): those users are news in our own sync only.
            others = sorted({s.target_user_id for s in accepted} - {requester_id})
            async with self.db.transaction() as txn:
                await self.store.add_signatures(txn, accepted)
                if devices:
                    await self.device_keys.bump_device_list(txn, requester_id, devices)
                if keys_changed:
                    await self.device_keys.bump_device_list(txn, requester_id, [])
                for other in others:
                    await self.device_keys.bump_device_list(txn, other, [], only_for=requester_id)
            if devices:
                for hook in self.device_list_hooks:
                    await hook(requester_id, devices)
            if keys_changed or others:
                await self._notify(requester_id)
        return failures

    async def _own_signatures(
        self, user_id: str, own: dict[str, dict[str, Any]], key_id: str, obj: dict[str, Any]
    ) -> list[StoredSignature]:
        """A device of ours signed by our self-signing key, or our master key signed by
        our devices."""
        master = own.get("master")
        if master is not None and key_id == _public_key(master):
            if not same_signed_object(master, obj):
                raise MatrixError(400, "M_INVALID_PARAM", "Signed key does not match stored key")
            sigs = signatures_by(obj, user_id)
            out = []
            for sig_key_id, sig in sigs.items():
                if sig_key_id in master.get("signatures", {}).get(user_id, {}):
                    continue  # already part of the uploaded key
                algo, _, device_id = sig_key_id.partition(":")
                device = await self.device_keys.get_device_keys(self.db, user_id, device_id)
                if algo != "ed25519" or device is None:
                    raise invalid_signature("Signature by an unknown device")
                if not has_valid_signature(obj, user_id, sig_key_id, device[0]):
                    raise invalid_signature()
                out.append(StoredSignature(user_id, key_id, user_id, sig_key_id, sig))
            if not out:
                raise invalid_signature("No new signature by one of your devices")
            return out
        device = await self.device_keys.get_device_keys(self.db, user_id, key_id)
        if device is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown key")
        if not same_signed_object(json.loads(device[2]), obj):
            raise MatrixError(400, "M_INVALID_PARAM", "Signed key does not match stored key")
        ssk = own.get("self_signing")
        if ssk is None:
            raise MatrixError(400, "M_MISSING_PARAM", "No self-signing key is available")
        return [self._verified(obj, user_id, key_id, user_id, _public_key(ssk))]

    async def _other_signature(
        self,
        requester_id: str,
        own: dict[str, dict[str, Any]],
        target_user: str,
        key_id: str,
        obj: dict[str, Any],
    ) -> list[StoredSignature]:
        """Another user's master key signed by our user-signing key."""
        theirs = await self.store.keys_of(self.db, target_user)
        master = theirs.get("master")
        if master is None or key_id != _public_key(master):
            raise MatrixError(404, "M_NOT_FOUND", "Unknown key (only local users' master keys)")
        if not same_signed_object(master, obj):
            raise MatrixError(400, "M_INVALID_PARAM", "Signed key does not match stored key")
        usk = own.get("user_signing")
        if usk is None:
            raise MatrixError(400, "M_MISSING_PARAM", "No user-signing key is available")
        return [self._verified(obj, target_user, key_id, requester_id, _public_key(usk))]

    @staticmethod
    def _verified(
        obj: dict[str, Any], target_user: str, target_key: str, signer: str, signer_pub: str
    ) -> StoredSignature:
        signer_key_id = f"ed25519:{signer_pub}"
        sig = signatures_by(obj, signer).get(signer_key_id)
        if sig is None:
            raise invalid_signature("Missing signature by the signing key")
        if not has_valid_signature(obj, signer, signer_key_id, signer_pub):
            raise invalid_signature()
        return StoredSignature(target_user, target_key, signer, signer_key_id, sig)

    async def on_deactivated(self, user_id: str) -> None:
        async with self.db.transaction() as txn:
            await self.store.delete_user(txn, user_id)
            await self.device_keys.bump_device_list(txn, user_id, [])
        await self._notify(user_id)
