"""Transactions to application services (Application Service API ``PUT
/_matrix/app/v1/transactions/{txnId}``).

Design note
-----------
Which events a service gets is derived from the global event stream, with a
persisted cursor per service (``appservice_state.events_pos``), rather than
from outbox rows written in each event's transaction. Why: the event's own
commit is already the durable record, so the room writer's transaction does
not grow by one row per service and event; after a crash the cursor says
exactly where to resume; and a service added later starts from "now" without
a backlog of rows nobody reads. Each service has one sender task:

    wake (change signal or ephemeral hook)
      -> oldest unacknowledged transaction?  -> PUT it, back off and retry until 200
      -> else read events after the cursor (a batch), keep the interesting ones
         -> none: move the cursor past the batch (nothing to send)
         -> some: ONE db transaction: new txn row (id = last + 1, body) + cursor
      -> nothing new: sleep until woken

Because the body is stored before its first attempt and deleted only after
the service answers 200, a retry (in this process or after a restart) sends
the same txn id with the same contents, and transactions go out strictly in
stream order, one at a time. A crash between the 200 and the delete re-sends
that txn id, which the spec asks services to de-duplicate. Ephemeral events
(typing, read receipts, presence) are queued in memory and become
durable once they are part of a stored transaction; those not yet taken are
lost with the process, as they are for /sync clients that miss them.
To-device messages for the service's users' devices (MSC2409, with
``receive_ephemeral``) stay in the devices' inboxes (e2ee/to_device.py) until
a stored transaction holds them; then they are deleted from the inbox. The
inbox wakes the sender through its delivery hook, and at start-up (or when a
worker process says the service's users changed) the sender looks for devices
of its users with messages waiting.

Interest (spec "Application services", Synapse's rules): the sender or a
member event's state key is in the service's user namespace, the room id in
its room namespace, one of the room's local aliases in its alias namespace,
or one of the service's users is joined to the room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote

import aiohttp

from homeserver.appservices.registration import AppService
from homeserver.appservices.store import AppServiceStore, PendingTxn
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.errors import MatrixError
from homeserver.logs import new_request_id, request_id
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.rooms_store import RoomStore

log = logging.getLogger("myelin.appservices")

BATCH = 100  # events read per step
MAX_EVENTS_PER_TXN = 100
MAX_EPHEMERAL_PER_TXN = 100
MAX_QUEUED_EPHEMERAL = 1000  # per service; the oldest are dropped beyond it
TIMEOUT_S = 30.0

# The stripped state of a room (spec "Stripped state") shown with an invite:
# (room id, inviter) -> events.
InviteState = Callable[[str, str], Awaitable[list[dict[str, Any]]]]
# Presence (MSC2409): a user's m.presence content, and the users sharing a room with them.
PresenceContent = Callable[[str], Awaitable[dict[str, Any]]]
RoomMates = Callable[[str], Awaitable[set[str]]]


class RoomInterest:
    """Which services care about a room, cached for one batch (members change)."""

    def __init__(self, rooms: RoomStore, members: MembershipStore, server_name: str) -> None:
        self.rooms = rooms
        self.members = members
        self.suffix = ":" + server_name
        self._aliases: dict[str, list[str]] = {}
        self._joined: dict[str, list[str]] = {}

    def reset(self) -> None:
        self._aliases.clear()
        self._joined.clear()

    async def _room(self, room_id: str) -> tuple[list[str], list[str]]:
        if room_id not in self._aliases:
            info = await self.rooms.get_room(room_id)
            if info is None:
                self._aliases[room_id], self._joined[room_id] = [], []
            else:
                self._aliases[room_id] = await self.rooms.aliases_for_room(info.room_nid)
                joined = await self.members.joined_users([info.room_nid])
                self._joined[room_id] = [u for u in joined if u.endswith(self.suffix)]
        return self._aliases[room_id], self._joined[room_id]

    async def room(self, service: AppService, room_id: str) -> bool:
        if service.is_interested_in_room(room_id):
            return True
        aliases, joined = await self._room(room_id)
        return any(service.is_interested_in_alias(a) for a in aliases) or any(
            service.is_interested_in_user(u) for u in joined
        )

    async def event(self, service: AppService, stored: StoredEvent) -> bool:
        ev = stored.event
        if service.is_interested_in_user(ev.sender):
            return True
        if ev.type == "m.room.member" and ev.state_key is not None:
            if service.is_interested_in_user(ev.state_key):
                return True
        return await self.room(service, ev.room_id)


class ServiceSender:
    """The one task that sends one service's transactions, in order."""

    def __init__(
        self,
        service: AppService,
        store: AppServiceStore,
        events: EventStore,
        serializer: EventSerializer,
        interest: RoomInterest,
        session: Callable[[], aiohttp.ClientSession],
        min_retry_s: float,
        max_retry_s: float,
        to_device: ToDeviceService | None = None,
        invite_state: InviteState | None = None,
        presence: tuple[PresenceContent, RoomMates] | None = None,
    ) -> None:
        self.service = service
        self.invite_state = invite_state
        self.presence = presence
        self.to_device_service = to_device
        # Devices of the service's users with to-device messages waiting in their inbox.
        self.to_device_pending: set[tuple[str, str]] = set()
        # Set when messages may wait that no local hook announced (start, other processes).
        self.rescan_to_device = True
        self.store = store
        self.events = events
        self.serializer = serializer
        self.interest = interest
        self.session = session
        self.min_retry_s = min_retry_s
        self.max_retry_s = max_retry_s
        self.wake = asyncio.Event()
        # Raw ephemeral events ({"room_id"?, "type", "content"}), filtered when taken.
        self.ephemeral: list[dict[str, Any]] = []

    def queue_ephemeral(self, edu: dict[str, Any]) -> None:
        self.ephemeral.append(edu)
        del self.ephemeral[:-MAX_QUEUED_EPHEMERAL]
        self.wake.set()

    def queue_to_device(self, user_id: str, device_ids: list[str]) -> None:
        self.to_device_pending.update((user_id, d) for d in device_ids)
        self.wake.set()

    async def _take_to_device(self) -> tuple[list[dict[str, Any]], list[tuple[str, str, int]]]:
        """Messages waiting for the service's devices (MSC2409 shape: the message with
        ``to_user_id`` and ``to_device_id``), and the inbox positions to ack."""
        if self.to_device_service is None:
            return [], []
        messages: list[dict[str, Any]] = []
        acks: list[tuple[str, str, int]] = []
        for user_id, device_id in sorted(self.to_device_pending):
            if len(messages) >= MAX_EPHEMERAL_PER_TXN:
                break
            found, upto = await self.to_device_service.to_device_for(
                user_id, device_id, 0, MAX_EPHEMERAL_PER_TXN
            )
            if not found:
                self.to_device_pending.discard((user_id, device_id))
                continue
            for message in found:
                messages.append({**message, "to_user_id": user_id, "to_device_id": device_id})
            acks.append((user_id, device_id, upto))
        return messages, acks

    async def _find_waiting_to_device(self) -> None:
        """Messages waiting for the service's devices that no hook of this process
        announced: at start (queued while the server was down, or before the service was
        configured) and when another process says its users changed."""
        if self.to_device_service is None or not self.service.receive_ephemeral:
            return
        for user_id, device_id in await self.to_device_service.devices_with_messages():
            if self.service.is_interested_in_user(user_id):
                self.to_device_pending.add((user_id, device_id))

    async def run(self) -> None:
        request_id.set(new_request_id("appservice"))  # this task's log lines
        started = False
        while True:
            try:
                if not started:
                    # A service seen for the first time starts at the stream's end.
                    start = await self.events.current_position()
                    await self.store.state(self.service.id, start)
                    started = True
                if self.rescan_to_device:
                    self.rescan_to_device = False
                    await self._find_waiting_to_device()
                pending = await self.store.oldest_pending(self.service.id)
                if pending is not None:
                    await self._deliver(pending)
                    continue
                # Cleared before reading: whatever commits after this wakes the wait below.
                self.wake.clear()
                if not await self._build_next():
                    await self.wake.wait()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("application service %s: sender step failed", self.service.id)
                await asyncio.sleep(self.min_retry_s)

    async def _build_next(self) -> bool:
        """Store the next transaction (or move the cursor); False when nothing is new."""
        state = await self.store.state(self.service.id, 0)
        batch = await self.events.events_after(state.events_pos, BATCH)
        self.interest.reset()
        position = state.events_pos
        chosen: list[StoredEvent] = []
        for stored in batch:
            if len(chosen) >= MAX_EVENTS_PER_TXN:
                break
            assert stored.stream_ordering is not None
            position = stored.stream_ordering
            if await self.interest.event(self.service, stored):
                chosen.append(stored)
        taken_eph = self.ephemeral[:MAX_EPHEMERAL_PER_TXN]
        ephemeral = [await self._fill(e) for e in taken_eph if await self._wants_ephemeral(e)]
        to_device, acks = await self._take_to_device()
        if not chosen and not ephemeral and not to_device:
            del self.ephemeral[: len(taken_eph)]
            if batch:
                await self.store.move_cursor(self.service.id, position)
                return True
            return False
        body: dict[str, Any] = {"events": await self._client_events(chosen)}
        if self.service.receive_ephemeral:
            # The stable name and MSC2409's, and MSC2409's to-device list, as Synapse
            # sends them to a service that asked for ephemeral events (empty lists too).
            body["ephemeral"] = ephemeral
            body["de.sorunome.msc2409.ephemeral"] = ephemeral
            body["de.sorunome.msc2409.to_device"] = to_device
        await self.store.add_txn(self.service.id, position, body)
        del self.ephemeral[: len(taken_eph)]
        inbox = self.to_device_service
        if inbox is not None:
            for user_id, device_id, upto in acks:
                # Now in a stored transaction: out of the inbox (a crash just before this
                # sends them once more in a later transaction, never loses them).
                await inbox.ack_to_device(user_id, device_id, upto)
        return True

    async def _client_events(self, chosen: list[StoredEvent]) -> list[dict[str, Any]]:
        """Client events as Synapse sends them to services: with its legacy ``user_id``
        and ``age`` beside the spec's fields (bridges written against Synapse read them),
        and an invite's room preview in ``invite_room_state`` (in ``unsigned`` and, as
        Synapse also does, at the top level)."""
        out = await self.serializer.serialize(chosen)
        for event in out:
            event["user_id"] = event["sender"]
            event["age"] = event.get("unsigned", {}).get("age", 0)
            content = event.get("content")
            if (
                self.invite_state is not None
                and event.get("type") == "m.room.member"
                and isinstance(content, dict)
                and content.get("membership") == "invite"
            ):
                preview = await self.invite_state(event["room_id"], event["sender"])
                event.setdefault("unsigned", {})["invite_room_state"] = preview
                event["invite_room_state"] = preview
        return out

    async def _wants_ephemeral(self, edu: dict[str, Any]) -> bool:
        """Room EDUs by the room's interest; presence (MSC2409) of the service's users
        and of users who share a room with one of them."""
        room_id = edu.get("room_id")
        if isinstance(room_id, str):
            return await self.interest.room(self.service, room_id)
        sender = edu.get("sender")
        if not isinstance(sender, str):
            return False
        if self.service.is_interested_in_user(sender):
            return True
        if edu.get("type") != "m.presence" or self.presence is None:
            return False
        mates = await self.presence[1](sender)
        return any(self.service.is_interested_in_user(u) for u in mates)

    async def _fill(self, edu: dict[str, Any]) -> dict[str, Any]:
        """Presence is queued as "this user changed"; its content is read when sent."""
        if edu.get("type") == "m.presence" and "content" not in edu and self.presence is not None:
            try:
                content = await self.presence[0](edu["sender"])
            except MatrixError:
                content = {"presence": "offline"}
            return {**edu, "content": content}
        return edu

    async def _deliver(self, txn: PendingTxn) -> None:
        """PUT until the service answers 200, backing off exponentially."""
        delay = self.min_retry_s
        while not await self._put(txn):
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_retry_s)
        await self.store.complete(self.service.id, txn.txn_id)

    async def _put(self, txn: PendingTxn) -> bool:
        assert self.service.url is not None
        url = f"{self.service.url}/_matrix/app/v1/transactions/{quote(str(txn.txn_id))}"
        headers = {"Authorization": f"Bearer {self.service.hs_token}"}
        try:
            async with self.session().put(
                url, json=txn.body, headers=headers, timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
            ) as resp:
                if resp.status == 200:
                    return True
                log.info(
                    "application service %s refused transaction %d: HTTP %d",
                    self.service.id,
                    txn.txn_id,
                    resp.status,
                )
        except (aiohttp.ClientError, TimeoutError) as e:
            log.info("application service %s unreachable: %s", self.service.id, type(e).__name__)
        return False


def typing_edu(room_id: str, user_ids: Iterable[str]) -> dict[str, Any]:
    return {"type": "m.typing", "room_id": room_id, "content": {"user_ids": list(user_ids)}}
