"""Inbound EDUs (server-server "EDUs", "Typing Notifications", "Receipts",
"Presence", "Send-to-device messaging", "Device Management").

Every handler first checks that the users it is about belong to the
origin server: a server speaks only for its own users. What fails a check
is dropped (EDUs have no per-item answer) and logged once per EDU with the
origin, by ``handle`` catching ``EduRefused``; nothing here logs contents.
Membership checks go through the same ``is_joined`` link the client API
uses. Typing and receipts for a room whose ``m.room.server_acl`` denies the
origin are refused (``server_allowed``, set by the rooms area).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from federation.device_lists import RemoteDeviceLists
from federation.errors import EduRefused
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.errors import MatrixError
from homeserver.events.identifiers import is_valid_event_id, is_valid_user_id
from homeserver.rooms.ephemeral.interfaces import IsJoined
from homeserver.rooms.ephemeral.receipts import READ, ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.userdata.presence import STATES, PresenceService

log = logging.getLogger("myelin.federation.edus")

# Remote typing without a refresh stops after this long (the sender refreshes).
FEDERATION_TYPING_TIMEOUT_MS = 60_000
MAX_RECEIPT_USERS = 1000
MAX_PRESENCE_PUSH = 1000

EduHandler = Callable[[str, dict[str, Any]], Awaitable[None]]
# (room_id, origin) -> whether the room's server ACL lets origin take part.
ServerAllowed = Callable[[str, str], Awaitable[bool]]


async def no_acl(room_id: str, origin: str) -> bool:
    return True


def _from(user_id: Any, origin: str) -> bool:
    return (
        isinstance(user_id, str)
        and is_valid_user_id(user_id, strict=False)
        and user_id.split(":", 1)[1] == origin
    )


class InboundEdus:
    def __init__(
        self,
        typing: TypingService,
        receipts: ReceiptService,
        presence: PresenceService,
        to_device: ToDeviceService,
        device_lists: RemoteDeviceLists,
        is_joined: IsJoined,
    ) -> None:
        self.typing = typing
        self.receipts = receipts
        self.presence = presence
        self.to_device = to_device
        self.device_lists = device_lists
        self.is_joined = is_joined
        self.server_allowed: ServerAllowed = no_acl
        self.handlers: dict[str, EduHandler] = {
            "m.typing": self.on_typing,
            "m.receipt": self.on_receipt,
            "m.presence": self.on_presence,
            "m.direct_to_device": self.on_to_device,
            "m.device_list_update": device_lists.on_device_list_update,
            "m.signing_key_update": device_lists.on_signing_key_update,
        }

    async def handle(self, origin: str, edu: Any) -> None:
        """One EDU of a transaction; unknown types are ignored, as the spec allows."""
        if not isinstance(edu, dict):
            return
        edu_type, content = edu.get("edu_type"), edu.get("content")
        handler = self.handlers.get(edu_type) if isinstance(edu_type, str) else None
        if handler is None or not isinstance(content, dict):
            return
        try:
            await handler(origin, content)
        except EduRefused as e:
            log.info("%s EDU from %s refused: %s", edu_type, origin, e.reason)
        except MatrixError as e:
            log.info("%s EDU from %s refused: %s", edu_type, origin, e.errcode)
        except Exception:
            log.exception("%s EDU from %s failed", edu_type, origin)

    async def _joined(self, user_id: str, room_id: str) -> bool:
        try:
            return await self.is_joined(user_id, room_id)
        except MatrixError:
            return False

    async def on_typing(self, origin: str, content: dict[str, Any]) -> None:
        user_id, room_id, typing = (
            content.get("user_id"),
            content.get("room_id"),
            content.get("typing"),
        )
        if not _from(user_id, origin):
            raise EduRefused("user is not of the origin server")
        if not isinstance(room_id, str) or not isinstance(typing, bool):
            raise EduRefused("malformed")
        assert isinstance(user_id, str)
        if not await self.server_allowed(room_id, origin):
            raise EduRefused("denied by the room's server ACL")
        if not await self._joined(user_id, room_id):
            raise EduRefused("user is not in the room")
        self.typing.apply(user_id, room_id, typing, FEDERATION_TYPING_TIMEOUT_MS)

    async def on_receipt(self, origin: str, content: dict[str, Any]) -> None:
        """Every acceptable receipt is recorded; the refused ones, counted by reason,
        make one ``EduRefused`` at the end."""
        refused: dict[str, int] = {}

        def refuse(reason: str) -> None:
            refused[reason] = refused.get(reason, 0) + 1

        for room_id, by_type in content.items():
            if not isinstance(by_type, dict):
                refuse("malformed")
                continue
            if not await self.server_allowed(room_id, origin):
                refuse("denied by the room's server ACL")
                continue
            users = by_type.get(READ)
            if not isinstance(users, dict) or len(users) > MAX_RECEIPT_USERS:
                refuse("malformed")
                continue
            for user_id, receipt in users.items():
                if not _from(user_id, origin):
                    refuse("user is not of the origin server")
                    continue
                if not isinstance(receipt, dict):
                    refuse("malformed")
                    continue
                event_ids = receipt.get("event_ids")
                data = receipt.get("data")
                data = data if isinstance(data, dict) else {}
                thread_id = data.get("thread_id")
                if (
                    not isinstance(event_ids, list)
                    or not event_ids
                    or not all(isinstance(e, str) and is_valid_event_id(e) for e in event_ids)
                    or (thread_id is not None and not isinstance(thread_id, str))
                ):
                    refuse("malformed")
                    continue
                ts = data.get("ts")
                stamp = ts if isinstance(ts, int) and not isinstance(ts, bool) else None
                if not await self._joined(user_id, room_id):
                    refuse("user is not in the room")
                    continue
                await self.receipts.record(user_id, room_id, READ, event_ids[-1], thread_id, stamp)
        if refused:
            raise EduRefused(", ".join(f"{n} {r}" for r, n in sorted(refused.items())))

    async def on_presence(self, origin: str, content: dict[str, Any]) -> None:
        push = content.get("push")
        if not isinstance(push, list):
            raise EduRefused("malformed")
        refused = 0
        for item in push[:MAX_PRESENCE_PUSH]:
            if not isinstance(item, dict) or not _from(item.get("user_id"), origin):
                refused += 1
                continue
            state = item.get("presence")
            if state not in STATES:
                refused += 1
                continue
            status_msg = item.get("status_msg")
            ago = item.get("last_active_ago")
            await self.presence.set_remote_status(
                item["user_id"],
                state,
                status_msg if isinstance(status_msg, str) else None,
                ago if isinstance(ago, int) and not isinstance(ago, bool) else 0,
            )
        if refused:
            raise EduRefused(f"{refused} updates not of the origin server's users, or malformed")

    async def on_to_device(self, origin: str, content: dict[str, Any]) -> None:
        sender, event_type, message_id = (
            content.get("sender"),
            content.get("type"),
            content.get("message_id"),
        )
        if not _from(sender, origin):
            raise EduRefused("sender is not of the origin server")
        if not isinstance(event_type, str) or not isinstance(message_id, str):
            raise EduRefused("malformed")
        assert isinstance(sender, str)
        await self.to_device.deliver_remote(sender, event_type, message_id, content.get("messages"))
