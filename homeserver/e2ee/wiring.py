"""Builds the e2ee services; called by the composition root.

``users_sharing_room_with`` and ``departed_room_mates`` come from the rooms
area and ``remote`` from federation; all are parameters so this package
never imports either. Its HTTP handlers are assembled in ``homeserver/api/assembly.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.e2ee.backup import KeyBackupService
from homeserver.e2ee.backup_store import BackupStore
from homeserver.e2ee.cross_signing import CrossSigningService
from homeserver.e2ee.cross_signing_store import CrossSigningStore
from homeserver.e2ee.device_keys_store import DeviceKeysStore
from homeserver.e2ee.interfaces import NoRemoteKeys, RemoteKeys, SharedRoomsLookup
from homeserver.e2ee.keys import DepartedLookup, KeysService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.e2ee.to_device_store import ToDeviceStore
from homeserver.storage.database import Database

# What /versions may advertise because it really works here.
UNSTABLE_FEATURES = {"org.matrix.e2e_cross_signing": True}


@dataclass
class E2ee:
    keys: KeysService
    cross_signing: CrossSigningService
    to_device: ToDeviceService
    backup: KeyBackupService


def build_e2ee(
    config: Config,
    db: Database,
    clock: Clock,
    accounts: AccountService,
    users_sharing_room_with: SharedRoomsLookup,
    departed_room_mates: DepartedLookup,
    arrived_room_mates: DepartedLookup,
    remote: RemoteKeys | None = None,
) -> E2ee:
    device_keys = DeviceKeysStore(db)
    cs_store = CrossSigningStore(db)
    keys = KeysService(
        db,
        config.server_name,
        device_keys,
        cs_store,
        remote or NoRemoteKeys(),
        users_sharing_room_with,
        departed_room_mates,
        arrived_room_mates,
    )
    cross_signing = CrossSigningService(db, cs_store, device_keys)
    to_device = ToDeviceService(
        db, ToDeviceStore(db), clock, config.server_name, config.limits.max_to_device_inbox
    )
    backup = KeyBackupService(db, BackupStore(db))
    accounts.device_created_hooks.append(keys.on_device_created)
    accounts.device_renamed_hooks.append(keys.on_device_renamed)
    accounts.devices_deleted_hooks.append(keys.on_devices_deleted)
    # Cross-signing changes reach the same subscribers (sync wake-ups, federation EDUs).
    cross_signing.device_list_hooks.append(keys.notify_device_list)
    accounts.devices_deleted_hooks.append(to_device.on_devices_deleted)
    accounts.deactivated_hooks.append(cross_signing.on_deactivated)
    accounts.deactivated_hooks.append(backup.on_deactivated)
    return E2ee(keys, cross_signing, to_device, backup)
