"""Builds the sending and receiving side of federation and connects it to the
homeserver's services (called once by ``Federation.connect`` from the
composition root).

What it subscribes to:
- ``ToDeviceService.outbox_hooks``      -> the sender drains e2e_to_device_outbox
- ``KeysService.device_list_hooks``     -> m.device_list_update / m.signing_key_update
- typing / receipt / presence hooks     -> m.typing / m.receipt / m.presence
and what it provides: ``remote_keys`` (the ``RemoteKeys`` of /keys/query and
/keys/claim), the ``/send`` receiver and the ``/user/*`` routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from federation.client import FederationClient
from federation.device_list_store import RemoteDeviceListStore
from federation.device_lists import RemoteDeviceLists
from federation.e2ee_api import E2eeFederationApi
from federation.e2ee_remote import FederationRemoteKeys
from federation.inbound_edus import InboundEdus
from federation.outbound_edus import OutboundEdus, ServersInRoom, ServersSharingRoom
from federation.outbox_store import OutboxStore
from federation.receiver import TransactionApi, TransactionReceiver
from federation.sender import FederationSender
from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.rooms.ephemeral.interfaces import IsJoined
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.server_lists import ServerPolicy
from homeserver.storage.database import Database
from homeserver.userdata.presence import PresenceService


@dataclass
class Relay:
    sender: FederationSender
    receiver: TransactionReceiver
    device_lists: RemoteDeviceLists
    outbound: OutboundEdus
    remote_keys: FederationRemoteKeys
    apis: list[Any]

    async def start(self) -> None:
        await self.sender.start()

    async def close(self) -> None:
        await self.outbound.close()
        await self.sender.close()
        await self.device_lists.close()


def build_relay(
    config: Config,
    db: Database,
    clock: Clock,
    client: FederationClient,
    accounts: AccountService,
    *,
    keys: KeysService,
    to_device: ToDeviceService,
    typing: TypingService,
    receipts: ReceiptService,
    presence: PresenceService,
    is_joined: IsJoined,
    servers_sharing_room_with: ServersSharingRoom,
    servers_in_room: ServersInRoom,
) -> Relay:
    name = config.server_name
    fed = config.federation
    store = OutboxStore(db)
    sender = FederationSender(
        name,
        store,
        to_device.store,
        client,
        clock,
        min_retry_ms=fed.min_retry_ms,
        max_retry_ms=fed.max_retry_ms,
        max_concurrent=fed.max_concurrent_transactions,
        allowed=ServerPolicy(fed.allow_list, fed.deny_list).allows,
    )
    device_lists = RemoteDeviceLists(
        db, RemoteDeviceListStore(db), keys.store, client, clock, keys.notify_device_list, name
    )
    edus = InboundEdus(typing, receipts, presence, to_device, device_lists, is_joined)
    receiver = TransactionReceiver(
        name,
        store,
        edus,
        clock,
        max_concurrent=fed.max_concurrent_inbound,
        peer_seen=sender.peer_is_back,
    )
    outbound = OutboundEdus(
        name,
        sender,
        keys,
        keys.store,
        keys.cs_store,
        presence,
        servers_sharing_room_with,
        servers_in_room,
    )
    to_device.outbox_hooks.append(sender.on_to_device_outbox)
    keys.device_list_hooks.append(outbound.on_device_list)
    typing.change_hooks.append(outbound.on_typing)
    receipts.change_hooks.append(outbound.on_receipt)
    presence.change_hooks.append(outbound.on_presence)
    return Relay(
        sender=sender,
        receiver=receiver,
        device_lists=device_lists,
        outbound=outbound,
        remote_keys=FederationRemoteKeys(client, device_lists),
        apis=[TransactionApi(receiver), E2eeFederationApi(name, keys, keys.store, accounts)],
    )
