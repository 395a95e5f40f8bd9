"""Turning local changes into EDUs for other servers (hooks wired in ``Federation``).

- Device lists (``KeysService.device_list_hooks``): one ``m.device_list_update``
  per changed device, ``stream_id`` = the change's position in our device-list
  stream and ``prev_id`` = the user's previous device change (changes are
  emitted in series, so there is one), or ``m.signing_key_update`` when the
  hook names no device (cross-signing keys changed). Sent to the servers
  sharing a room with the user.
- Typing and receipts (``TypingService``/``ReceiptService`` change hooks) to
  the servers in the room; presence to the servers sharing a room, and to a server
  newly sharing one (``on_join``).

Only our own users' changes are sent: changes that came in over federation
fire the same hooks and are ignored here. The ephemeral hooks are
synchronous, so they schedule the (persisting) enqueue as a task.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from federation.sender import FederationSender
from homeserver.e2ee.cross_signing_store import CrossSigningStore
from homeserver.e2ee.device_keys_store import DeviceKeysStore
from homeserver.e2ee.keys import KeysService
from homeserver.rooms.ephemeral.receipts import READ, edu_content
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord
from homeserver.rooms.ephemeral.typing import TypingChange
from homeserver.userdata.presence import PresenceService

log = logging.getLogger("myelin.federation.outbound")

# (user_id) -> servers (other than ours) sharing at least one room with the user.
ServersSharingRoom = Callable[[str], Awaitable[set[str]]]
# (room_id) -> servers with a joined member in the room.
ServersInRoom = Callable[[str], Awaitable[set[str]]]
# () -> our users in one room (read only when needed).
LocalMembers = Callable[[], Awaitable[list[str]]]
# Our users whose presence one remote join brings to the joiner's server.
MAX_PRESENCE_ON_JOIN = 200


class OutboundEdus:
    def __init__(
        self,
        server_name: str,
        sender: FederationSender,
        keys: KeysService,
        device_keys: DeviceKeysStore,
        cross_signing: CrossSigningStore,
        presence: PresenceService,
        servers_sharing_room_with: ServersSharingRoom,
        servers_in_room: ServersInRoom,
    ) -> None:
        self.server_name = server_name
        self.sender = sender
        self.keys = keys
        self.device_keys = device_keys
        self.cross_signing = cross_signing
        self.presence = presence
        self.servers_sharing_room_with = servers_sharing_room_with
        self.servers_in_room = servers_in_room
        self._tasks: set[asyncio.Task[None]] = set()

    def _is_local(self, user_id: str) -> bool:
        return user_id.split(":", 1)[-1] == self.server_name

    async def _destinations(self, user_id: str) -> set[str]:
        return {s for s in await self.servers_sharing_room_with(user_id) if s != self.server_name}

    # ------------------------------------------------------------ device lists

    async def on_device_list(self, user_id: str, device_ids: list[str]) -> None:
        if not self._is_local(user_id):
            return
        servers = await self._destinations(user_id)
        if not servers:
            return
        if not device_ids:
            await self._signing_key_update(user_id, servers)
            return
        changes = await self.device_keys.recent_device_changes(user_id, len(device_ids) + 1)
        changes.reverse()  # oldest first
        devices = await self.keys.device_list(user_id)
        for i, (stream_id, device_id) in enumerate(changes):
            if i == 0 and len(changes) > len(device_ids):
                continue  # the change before this batch: only its position is needed
            prev = [changes[i - 1][0]] if i > 0 else []
            content: dict[str, Any] = {
                "user_id": user_id,
                "device_id": device_id,
                "stream_id": stream_id,
                "prev_id": prev,
            }
            entry = devices.get(device_id)
            if entry is None:
                content["deleted"] = True
            else:
                content.update(entry)  # a new login has a name but no keys yet
            for server in sorted(servers):
                await self.sender.enqueue_edu(server, "m.device_list_update", content)

    async def _signing_key_update(self, user_id: str, servers: set[str]) -> None:
        current = await self.keys.query_local("", {user_id: []})
        content: dict[str, Any] = {"user_id": user_id}
        if user_id in current["master_keys"]:
            content["master_key"] = current["master_keys"][user_id]
        if user_id in current["self_signing_keys"]:
            content["self_signing_key"] = current["self_signing_keys"][user_id]
        if len(content) == 1:
            return
        for server in sorted(servers):
            await self.sender.enqueue_edu(
                server, "m.signing_key_update", content, key=f"signing:{user_id}"
            )

    # ------------------------------------------------------------ ephemeral

    def _spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:
                log.exception("queueing an EDU failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def on_typing(self, change: TypingChange) -> None:
        # With several processes every one applies each change; its taker sends it.
        if change.taken_here and self._is_local(change.user_id):
            self._spawn(self._typing(change))

    async def _typing(self, change: TypingChange) -> None:
        content = {"room_id": change.room_id, "user_id": change.user_id, "typing": change.typing}
        for server in sorted(await self.servers_in_room(change.room_id)):
            await self.sender.enqueue_edu(
                server, "m.typing", content, key=f"{change.room_id}|{change.user_id}"
            )

    def on_receipt(self, record: ReceiptRecord) -> None:
        if record.receipt_type == READ and self._is_local(record.user_id):
            self._spawn(self._receipt(record))

    async def _receipt(self, record: ReceiptRecord) -> None:
        content = edu_content([record])
        key = f"{record.room_id}|{record.user_id}|{record.thread_id or ''}"
        for server in sorted(await self.servers_in_room(record.room_id)):
            await self.sender.enqueue_edu(server, "m.receipt", content, key=key)

    def on_presence(self, user_id: str, position: int) -> None:
        if self._is_local(user_id):
            self._spawn(self._presence(user_id))

    async def _presence(self, user_id: str) -> None:
        servers = await self._destinations(user_id)
        if not servers:
            return
        status = await self.presence.get_status(user_id)
        push = {"user_id": user_id, **status}
        push.setdefault("last_active_ago", 0)
        push.setdefault("currently_active", False)
        for server in sorted(servers):
            await self.sender.enqueue_edu(
                server, "m.presence", {"push": [push]}, key=f"presence:{user_id}"
            )

    def on_join(self, joiner: str, room_id: str, local_members: LocalMembers) -> None:
        """A server that newly shares a room learns the presence of our users there at
        once, not at their next change: a remote user's join brings their server our
        members' presence; one of ours joining brings theirs to every server in the
        room (Sytest "New federated private chats get full presence information")."""
        self._spawn(self._presence_on_join(joiner, room_id, local_members))

    async def _presence_on_join(
        self, joiner: str, room_id: str, local_members: LocalMembers
    ) -> None:
        if self._is_local(joiner):
            users = [joiner]
            servers = await self.servers_in_room(room_id) - {self.server_name}
        else:
            users = (await local_members())[:MAX_PRESENCE_ON_JOIN]
            servers = {joiner.split(":", 1)[1]}
        rows = await self.presence.store.local_rows(users)
        for row in rows:
            if row.state == "offline":
                continue  # what a server that was never told assumes anyway
            push = {"user_id": row.user_id, **self.presence.content(row)}
            for server in sorted(servers):
                await self.sender.enqueue_edu(
                    server, "m.presence", {"push": [push]}, key=f"presence:{row.user_id}"
                )

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
