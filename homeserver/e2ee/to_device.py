"""Send-to-device messaging (spec: "Send-to-Device messaging").

Design note
-----------
::

    PUT /sendToDevice/{type}/{txn}
        |  one transaction:
        |    1. record (sender, sender device, txn id)  -- a retry stops here
        |    2. expand '*' to the recipient's devices; drop unknown devices
        |    3. refuse the whole request if an inbox would exceed its bound
        |    4. append to each local inbox (positions from the 'to_device' head)
        |    5. one outbox row per remote server (m.direct_to_device EDU content)
        |  commit, then hooks (wake /sync; federation sender)
        v
    200 {}                      -- only after the commit: nothing acknowledged is lost

    /sync (sync builder):  since token td=N
        ack_to_device(user, device, N)         -- client proved it got <= N: delete
        to_device_for(user, device, N, 100)    -- (events, next_pos) -> token td=next_pos

The inbox is deleted only by the acknowledgement, so an offline device or a
restart loses nothing. Positions are allocated in commit order
(``streams.allocate``), so a reader never skips a message. Contents are
opaque: stored as the JSON text the client sent, never logged or inspected.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from homeserver.clock import Clock
from homeserver.e2ee.interfaces import OutboxHook, ToDeviceHook
from homeserver.e2ee.streams import TO_DEVICE, current
from homeserver.e2ee.to_device_store import InboxMessage, ToDeviceStore
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.identifiers import is_valid_user_id
from homeserver.storage.database import Database, Queries

MAX_EVENT_TYPE_LENGTH = 255
MAX_TXN_ID_LENGTH = 255
INBOX_FULL_RETRY_MS = 30_000
DEFAULT_SYNC_LIMIT = 100


class ToDeviceService:
    def __init__(
        self,
        db: Database,
        store: ToDeviceStore,
        clock: Clock,
        server_name: str,
        max_inbox: int,
    ) -> None:
        self.db = db
        self.store = store
        self.clock = clock
        self.server_name = server_name
        self.max_inbox = max_inbox
        # (user_id, device_ids) after messages were queued for local devices (wake /sync).
        self.local_hooks: list[ToDeviceHook] = []
        # (destination) after messages were queued for a remote server (federation sender).
        self.outbox_hooks: list[OutboxHook] = []

    async def send(
        self,
        sender: str,
        sender_device: str,
        event_type: str,
        txn_id: str,
        messages: Any,
    ) -> None:
        """PUT /sendToDevice: queue the messages durably; idempotent per txn id."""
        if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
            raise invalid_param("Invalid event type")
        if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
            raise invalid_param("Invalid transaction id")
        by_user = _check_messages(messages)
        local_users = [u for u in by_user if u.split(":", 1)[1] == self.server_name]
        remote: dict[str, dict[str, dict[str, Any]]] = {}
        for user_id, devices in by_user.items():
            server = user_id.split(":", 1)[1]
            if server != self.server_name:
                remote.setdefault(server, {})[user_id] = devices
        woken: dict[str, list[str]] = {}
        async with self.db.transaction() as txn:
            now = self.clock.now_ms()
            if not await self.store.claim_txn(txn, sender, sender_device, txn_id, now):
                return
            queued = await self._expand(txn, sender, event_type, local_users, by_user)
            if queued:
                self._check_bounds(
                    queued, await self.store.inbox_sizes(txn, sorted({m.user_id for m in queued}))
                )
                await self.store.enqueue(txn, queued)
                for m in queued:
                    woken.setdefault(m.user_id, []).append(m.device_id)
            for destination, msgs in remote.items():
                edu = {
                    "sender": sender,
                    "type": event_type,
                    "message_id": secrets.token_urlsafe(12),
                    "messages": msgs,
                }
                await self.store.add_outbox(txn, destination, edu, now)
        for user_id, device_ids in woken.items():
            for hook in self.local_hooks:
                await hook(user_id, device_ids)
        for destination in remote:
            for ohook in self.outbox_hooks:
                await ohook(destination)

    async def _expand(
        self,
        txn: Queries,
        sender: str,
        event_type: str,
        local_users: list[str],
        by_user: dict[str, dict[str, dict[str, Any]]],
    ) -> list[InboxMessage]:
        """One inbox message per existing target device ('*': every device of the user)."""
        known = await self.store.local_devices(txn, local_users)
        queued: list[InboxMessage] = []
        for user_id in local_users:
            have = known.get(user_id, set())
            for device_id, content in by_user[user_id].items():
                targets = sorted(have) if device_id == "*" else [device_id]
                text = json.dumps(content)
                for target in targets:
                    if target in have:
                        queued.append(InboxMessage(user_id, target, sender, event_type, text))
        return queued

    async def deliver_remote(
        self, sender: str, event_type: str, message_id: str, messages: Any
    ) -> int:
        """An ``m.direct_to_device`` EDU from another server (the caller checked that
        ``sender`` belongs to it): queue for our devices; a repeated ``message_id``
        of the same sender is a no-op. Returns the number of messages queued.

        Devices whose inbox is full drop the message (the sending server cannot be
        told per message); everything else is delivered."""
        if not event_type or len(event_type) > MAX_EVENT_TYPE_LENGTH:
            raise invalid_param("Invalid event type")
        if not message_id or len(message_id) > MAX_TXN_ID_LENGTH:
            raise invalid_param("Invalid message id")
        by_user = _check_messages(messages)
        local_users = [u for u in by_user if u.split(":", 1)[1] == self.server_name]
        woken: dict[str, list[str]] = {}
        async with self.db.transaction() as txn:
            # Remote senders have no device: their message ids share the txn table
            # under an empty sender_device, which no local device can have.
            if not await self.store.claim_txn(txn, sender, "", message_id, self.clock.now_ms()):
                return 0
            queued = await self._expand(txn, sender, event_type, local_users, by_user)
            if queued:
                sizes = await self.store.inbox_sizes(txn, sorted({m.user_id for m in queued}))
                kept: list[InboxMessage] = []
                for m in queued:
                    key = (m.user_id, m.device_id)
                    if sizes.get(key, 0) < self.max_inbox:
                        sizes[key] = sizes.get(key, 0) + 1
                        kept.append(m)
                queued = kept
            if queued:
                await self.store.enqueue(txn, queued)
                for m in queued:
                    woken.setdefault(m.user_id, []).append(m.device_id)
        for user_id, device_ids in woken.items():
            for hook in self.local_hooks:
                await hook(user_id, device_ids)
        return len(queued)

    def _check_bounds(self, queued: list[InboxMessage], sizes: dict[tuple[str, str], int]) -> None:
        added: dict[tuple[str, str], int] = {}
        for m in queued:
            key = (m.user_id, m.device_id)
            added[key] = added.get(key, 0) + 1
            if sizes.get(key, 0) + added[key] > self.max_inbox:
                raise MatrixError(
                    429,
                    "M_LIMIT_EXCEEDED",
                    f"The to-device inbox of {m.user_id} device {m.device_id} is full"
                    f" ({self.max_inbox} undelivered messages); try again later",
                    retry_after_ms=INBOX_FULL_RETRY_MS,
                )

    # ----------------------------------------------------------------- /sync

    async def current_pos(self) -> int:
        return await current(self.db, TO_DEVICE)

    async def to_device_for(
        self, user_id: str, device_id: str, since_pos: int, limit: int = DEFAULT_SYNC_LIMIT
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages after ``since_pos`` for the device, oldest first, and the position to
        put in the next sync token (``since_pos`` when there is nothing new)."""
        rows = await self.store.fetch(user_id, device_id, since_pos, limit)
        events = [
            {"sender": sender, "type": event_type, "content": json.loads(content)}
            for _, sender, event_type, content in rows
        ]
        return events, (rows[-1][0] if rows else since_pos)

    async def devices_with_messages(self) -> list[tuple[str, str]]:
        """Local devices whose inbox is not empty (application services catch up at start)."""
        return await self.store.inbox_devices()

    async def ack_to_device(self, user_id: str, device_id: str, upto_pos: int) -> None:
        """The device synced with a token at ``upto_pos``: delete what it received."""
        if upto_pos > 0:
            await self.store.delete_upto(user_id, device_id, upto_pos)

    async def on_devices_deleted(self, user_id: str, device_ids: list[str]) -> None:
        """AccountService hook: a deleted device's inbox and txn ids go with it."""
        await self.store.delete_devices(user_id, device_ids)


def _check_messages(messages: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(messages, dict):
        raise bad_json("'messages' must be an object")
    for user_id, devices in messages.items():
        if not is_valid_user_id(user_id, strict=False):
            raise invalid_param("'messages' holds an invalid user id")
        if not isinstance(devices, dict):
            raise bad_json("'messages' must map user ids to objects of devices")
        for device_id, content in devices.items():
            if not device_id or not isinstance(content, dict):
                raise bad_json("each to-device message must be an object")
    return messages
