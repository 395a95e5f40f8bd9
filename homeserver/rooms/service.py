"""RoomService: the single writer of each room, and the way every local event is made.

Design note
-----------
Events of one room are built and persisted under an asyncio lock keyed by
room id (DESIGN "Linear rooms"); the sends waiting for a room are taken in
batches (group commit, ``send_queue``) and built as a chain::

    send_event ─┐
    join/leave ─┴─> send_queue ─> lock(room) ─> prev = extremities, auth = current state
                      ─> for each request: build (hash, sign, id) on the one
                         before ─> checks.check_event against the state before it
                      ─> EventPersister.persist_chain (one transaction, with the
                         outbox rows; push rules are evaluated behind it)
                  unlock ─> each request: pre_notify_hooks ─> signal.changed(local
                         members) ─> event_persisted_hooks

Building and persisting a batch is ``chain_writer.ChainWriter``'s job; this
module keeps the room's lock, the state reads and what runs after the commit.
A new room (``create_room_chain``) is the same chain built on its create event
(nothing to read: the room is not stored yet) and persisted with the room row
in one transaction (``EventPersister.persist_new_room``).

The check is the same one federation runs on received events; our own
events get no shortcut. Hooks run after the commit and may not undo it: a
failing hook is logged, the client still gets its event id. No network call
runs under the lock: a remote invite is signed by the invitee's server
between two locked steps (``_send_remote_invite``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any

from nacl.signing import VerifyKey

from homeserver.clock import Clock
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth.constants import MEMBER
from homeserver.rooms.chain_writer import (
    ChainWriter,
    InviteExchange,
    check_local,
)
from homeserver.rooms.chain_writer import not_in_room as not_in_room
from homeserver.rooms.content_policy import ContentPolicy
from homeserver.rooms.member_split import MemberSplits
from homeserver.rooms.persist import EventPersister, NewRoom, PersistPlan, TxnRef
from homeserver.rooms.prechecks import (
    ENCRYPTION,
    build_local_event,
    check_thread_root,
    no_encryption_downgrade,
)
from homeserver.rooms.send_queue import EventRequest, RoomSendQueues
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.rooms_store import RoomInfo, RoomStore, StateKey
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.write_order import RoomMovedOn
from homeserver.storage.database import Queries
from homeserver.streams.signal import EVENTS, ChangeSignal

log = logging.getLogger("myelin.rooms")

# Called after an event is durably persisted: (stored event, room).
EventHook = Callable[[StoredEvent, RoomInfo], Awaitable[None]]
# Tries to persist a remote invite whose signing ran outside the room lock (see
# _send_remote_invite) before doing the exchange under the lock.
INVITE_EXCHANGE_ATTEMPTS = 3


class RoomService:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        signing_key: SigningKey,
        rooms: RoomStore,
        events: EventStore,
        state: StateStore,
        members: MembershipStore,
        persister: EventPersister,
        signal: ChangeSignal,
    ) -> None:
        self.server_name = server_name
        self.clock = clock
        self.signing_key = signing_key
        self.rooms = rooms
        self.events = events
        self.state = state
        # Lazy-loaded members' view of state groups (``state_at_many``'s ``members``).
        self.member_splits = MemberSplits()
        self.members = members
        self.persister = persister
        # Wakes local members' /sync (the sync notifier, connected by the composition root).
        self.signal = signal
        self.event_persisted_hooks: list[EventHook] = []
        # Run before /sync is woken, for what a woken sync must already see.
        # Keep them quick; failures are logged. Whatever clients rely on belongs in
        # the event's transaction instead (EventPersister prepare/txn hooks): a
        # crash between the commit and these hooks skips them.
        self.pre_notify_hooks: list[EventHook] = []
        # Set when application services are configured: (user id, alias) raises
        # M_EXCLUSIVE for an alias a service holds exclusively and the user is not its.
        self.alias_claim_check: Callable[[str, str], None] | None = None
        # Invites to users on other servers; None without federation. Bound late by
        # federation (FederatedRooms.attach), whose membership handshakes are built on
        # this service: a real cycle.
        self.invite_exchange: InviteExchange | None = None
        # Rooms joined over federation with partial state (no members yet): waits,
        # bounded, until the room's whole state is here; whether it is. None without
        # federation (FederatedRooms.attach binds it).
        self.full_state_wait: Callable[[RoomInfo], Awaitable[bool]] | None = None
        # Checks local users' events before they are built (content_policy config).
        self.content_policy = ContentPolicy([])
        self._locks: dict[str, asyncio.Lock] = {}
        # Local sends waiting per room, persisted in batches (group commit).
        # Builds and persists the batches (``chain_writer``).
        self.chains = ChainWriter(self)
        self.send_queues = RoomSendQueues(self.chains.run_batch, self.lock)
        # Strictly increasing create-event timestamps: in room versions whose room id is
        # the create event's hash, two rooms made by one user in the same millisecond
        # with the same content would otherwise get the same id.
        self._last_create_ts = 0

    # ------------------------------------------------------------ helpers

    def lock(self, room_id: str) -> asyncio.Lock:
        lock = self._locks.get(room_id)
        if lock is None:
            lock = self._locks[room_id] = asyncio.Lock()
        return lock

    async def verify_key(self, server_name: str, key_id: str) -> VerifyKey | None:
        """Keys for signature checks; only our own until federation adds its keyring."""
        if server_name == self.server_name and key_id == self.signing_key.key_id:
            return self.signing_key.verify_key
        return None

    async def wait_full_state(self, room: RoomInfo) -> None:
        """Before reading a whole member list: a room joined with partial state is
        given (a bounded) time to get its members; past that the members known are
        served."""
        if self.full_state_wait is not None and not await self.full_state_wait(room):
            log.warning("serving %s's members before its state is complete", room.room_id)

    async def room_or_forbidden(self, room_id: str) -> RoomInfo:
        room = await self.rooms.get_room(room_id)
        if room is None:
            raise not_in_room()
        return room

    def new_room_id(self) -> str:
        alphabet = string.ascii_letters
        local = "".join(secrets.choice(alphabet) for _ in range(18))
        return f"!{local}:{self.server_name}"

    def new_event_id(self, rv: RoomVersion) -> str | None:
        """A fresh ``$opaque:server`` id for a room version 1/2 event (rooms
        v1-event-ids); None where the id is the event's hash."""
        if not rv.event_id_in_pdu:
            return None
        return f"${secrets.token_urlsafe(18)}:{self.server_name}"

    # -------------------------------------------------------------- state

    async def _events_for(self, nids: Mapping[int, int]) -> dict[StateKey, StoredEvent]:
        keys = await self.rooms.keys_for_nids(nids.keys())
        found = await self.events.by_nids(nids.values())
        return {keys[k]: found[e] for k, e in nids.items() if k in keys and e in found}

    async def events_for_state(self, nids: Mapping[int, int]) -> dict[StateKey, StoredEvent]:
        """The events of a state-nids map (``StateStore``'s), by their keys."""
        return await self._events_for(nids)

    async def current_state(
        self, room: RoomInfo, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        """The room's current state (all of it, kept until it changes, or only ``keys``)."""
        if keys is None:
            return await self._events_for(await self.state.current_state_cached(room.room_nid))
        key_nids = await self.rooms.key_nids(keys)
        nids = await self.state.current_state(room.room_nid, key_nids.values())
        return await self._events_for(nids)

    async def current_state_event(
        self, room: RoomInfo, event_type: str, state_key: str = ""
    ) -> StoredEvent | None:
        return (await self.current_state(room, [(event_type, state_key)])).get(
            (event_type, state_key)
        )

    async def state_at(
        self, group: int | None, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        """The state stored in ``group`` (the state after some event)."""
        if group is None:
            return {}
        if keys is None:
            return await self._events_for(await self.state.state_at_group(group))
        key_nids = await self.rooms.key_nids(keys)
        nids = await self.state.state_keys_at_group(group, key_nids.values())
        return await self._events_for(nids)

    async def state_at_many(
        self,
        groups: Iterable[int | None],
        keys: Iterable[StateKey] | None = None,
        keep: Callable[[int, StateKey], bool] | None = None,
        members: Mapping[int, Collection[str]] | None = None,
    ) -> dict[int, dict[StateKey, StoredEvent]]:
        """``state_at`` for many groups at once (a constant number of statements).
        ``keep(group, key)``: which entries to load, decided on the key before any event
        is read. ``members``: group -> the only users whose member events to load
        (lazy-loaded members: a big room's other members are never loaded, nor looked
        at, ``member_split.py``)."""
        wanted = {g for g in groups if g is not None}
        if not wanted:
            return {}
        key_nids = None if keys is None else list((await self.rooms.key_nids(keys)).values())
        by_group = await self.state.keys_at_groups(wanted, key_nids)
        if members is not None and keys is None:
            names_of = self.rooms.keys_for_nids
            by_group = {
                group: await self.member_splits.pick(group, nids, members.get(group, ()), names_of)
                for group, nids in by_group.items()
            }
        names = await self.rooms.keys_for_nids({k for nids in by_group.values() for k in nids})
        if keep is not None:
            by_group = {
                group: {k: e for k, e in nids.items() if k in names and keep(group, names[k])}
                for group, nids in by_group.items()
            }
        found = await self.events.by_nids({e for nids in by_group.values() for e in nids.values()})
        return {
            group: {names[k]: found[e] for k, e in nids.items() if k in names and e in found}
            for group, nids in by_group.items()
        }

    async def state_before(
        self,
        group: int | None,
        delta: Mapping[int, int | None] | None,
        keys: Iterable[StateKey],
    ) -> dict[StateKey, StoredEvent]:
        """``keys`` of the state ``group`` changed by ``delta`` (a ``PersistPlan``'s
        state before its event), without writing the delta as a group."""
        key_nids = await self.rooms.key_nids(keys)
        nids: dict[int, int] = {}
        if group is not None:
            nids.update(await self.state.state_keys_at_group(group, key_nids.values()))
        for key_nid in key_nids.values():
            if delta is not None and key_nid in delta:
                changed = delta[key_nid]
                if changed is None:
                    nids.pop(key_nid, None)
                else:
                    nids[key_nid] = changed
        return await self._events_for(nids)

    # ------------------------------------------------------------ writing

    async def send_event(
        self,
        requester_user_id: str,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        txn: TxnRef | None = None,
    ) -> str:
        """Build, check and persist one event from a local user; its event id.

        A repeated ``txn`` (same user, device and txn id) returns the first
        event's id without sending again: the chain builder looks the txn ids
        up, once per batch, under the room's lock (``ChainWriter.build_chain``),
        so the retry is answered there, not with a lookup of its own here.
        """
        room = await self.room_or_forbidden(room_id)
        if state_key is None:
            await check_thread_root(self.events, content)
        precheck = no_encryption_downgrade(content) if event_type == ENCRYPTION else None
        stored = await self.create_and_send(
            room,
            requester_user_id,
            event_type,
            content,
            state_key,
            txn,
            precheck,
            keep_unchanged=state_key is not None,
        )
        return stored.event.event_id

    async def create_and_send(
        self,
        room: RoomInfo,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        txn: TxnRef | None = None,
        precheck: Callable[[dict[StateKey, StoredEvent]], None] | None = None,
        keep_unchanged: bool = False,
        before_persist: Callable[[Event], Awaitable[None]] | None = None,
    ) -> StoredEvent:
        """The single writer path: under the room lock, build on the current
        extremities and state, check, persist; then wake and notify. Sends that
        wait for the same room are built as a chain and persisted together
        (``send_queue``); each still gets its own checks, position and error.

        ``before_persist`` runs with the built and checked event, still under the room
        lock, before it is persisted; if it raises, the event is not sent. (A room
        upgrade names the tombstone's id in the new room before sending the tombstone.)

        ``precheck`` sees the state the event is built on (client-API rules
        that are not auth rules, such as the encryption downgrade).
        ``keep_unchanged``: a state event the same sender already set with the
        same content is not sent again; the current one is returned (setting
        state, or joining, twice is idempotent, as in Synapse).

        The content policy runs first, outside the lock (a module may be slow):
        a rejection is 403 M_FORBIDDEN; a flag files a report once stored.
        """
        req = EventRequest(
            room,
            sender,
            event_type,
            content,
            state_key,
            txn,
            precheck,
            keep_unchanged,
            before_persist,
        )
        verdict = await self.content_policy.check_local(
            self.server_name, room.room_id, sender, event_type, content, state_key
        )
        if self.chains.is_remote_invite(event_type, content, state_key):
            stored = await self._send_remote_invite(req)
        else:
            stored, fresh = await self.send_queues.submit(req)
            if not fresh:
                return stored
            await self.after_persist(stored, room)
        await self.content_policy.settle(verdict, room.room_id, stored.event.event_id)
        return stored

    async def _send_remote_invite(self, req: EventRequest) -> StoredEvent:
        """An invite of a remote user: the invitee's server must sign it first, and that
        request never runs under the room's lock (a slow server would stall the room).

        The invite is built and checked under the lock, sent for signing without it,
        and persisted under the lock again only if the room's extremities did not
        move meanwhile (then the state it was checked against is still current).
        If they moved, it is built again on the new ones, a few times; the last
        resort is the old way, with the exchange under the lock, so it always ends.
        """
        room = req.room
        for _ in range(INVITE_EXCHANGE_ATTEMPTS):
            async with self.lock(room.room_id):
                chain = await self.chains.build_chain([req])
                result = chain.results[0]
                if isinstance(result, BaseException):
                    raise result
                if result is not None:
                    return result[0]
                draft = chain.drafts[0]
            signed = await self.chains.exchange_invite(draft)
            async with self.lock(room.room_id):
                if req.txn is not None and (done := await self.chains.txns_sent([req.txn])):
                    return done[req.txn]
                now = [e.event_nid for e in await self.events.extremities(room.room_nid)]
                if now != chain.extremity_nids:
                    continue
                try:
                    stored = (await self.chains.persist_chain(chain, [signed]))[0]
                except RoomMovedOn:  # another process moved it on (``write_order``)
                    continue
            await self.after_persist(stored, room)
            return stored
        async with self.lock(room.room_id):
            result = (await self.chains.run_batch([req]))[0]
        if isinstance(result, BaseException):
            raise result
        await self.after_persist(result[0], room)
        return result[0]

    async def build_create_event(
        self,
        version: RoomVersion,
        creator: str,
        content: dict[str, Any],
        room_id: str | None = None,
    ) -> Event:
        """Build and check the create event of a new room. ``room_id``: one chosen
        beforehand (from ``new_room_id``; not for versions whose room id is the create
        event's hash)."""
        fields: dict[str, Any] = {
            "type": "m.room.create",
            "state_key": "",
            "sender": creator,
            "content": content,
            "prev_events": [],
            "auth_events": [],
            "depth": 1,
            "origin_server_ts": self._create_ts(),
        }
        if not version.room_id_from_create_event:
            fields["room_id"] = room_id or self.new_room_id()
        event = build_local_event(
            self.server_name, self.signing_key, self.new_event_id(version), version, fields
        )
        await check_local(event, [], {}, None, self.verify_key)
        return event

    async def create_room_with(
        self,
        version: RoomVersion,
        creator: str,
        content: dict[str, Any],
        room_id: str | None = None,
    ) -> tuple[RoomInfo, StoredEvent]:
        """Build, check and persist the create event of a new room, and the room row."""
        event = await self.build_create_event(version, creator, content, room_id)
        room, stored = await self.create_room_chain(event, creator, [])
        return room, stored[0]

    async def create_room_chain(
        self,
        create: Event,
        creator: str,
        initial: list[tuple[str, dict[str, Any], str | None]],
        also: Callable[[Queries, int], Awaitable[None]] | None = None,
    ) -> tuple[RoomInfo, list[StoredEvent]]:
        """A new room from its built ``create`` event and its ``initial`` events (type,
        content, state key; sent by ``creator``), built on it in order, checked like any
        other, and persisted with the room row in ONE transaction (``also`` runs in it:
        ``EventPersister.persist_new_room``). Any failure, from the content policy to the
        auth rules, makes no room at all. Then each event is announced, in order."""
        room_id = create.room_id
        building = RoomInfo(0, room_id, create.room_version, creator)  # no nid yet
        reqs = [EventRequest(building, creator, t, c, k) for t, c, k in initial]
        verdicts = [
            await self.content_policy.check_local(
                self.server_name, room_id, creator, r.event_type, r.content, r.state_key
            )
            for r in reqs
        ]
        events = [create, *await self.chains.build_initial(create, reqs)]
        plans = [
            PersistPlan(event=e, prev_nids=[], state_group_before=None, replaces_nid=None)
            for e in events
        ]
        async with self.lock(room_id):
            stored = await self.persister.persist_new_room(plans, NewRoom(room_id, creator), also)
        room = await self.rooms.get_room(room_id)
        assert room is not None
        for s in stored:
            await self.after_persist(s, room)
        for verdict, s in zip(verdicts, stored[1:], strict=True):
            await self.content_policy.settle(verdict, room_id, s.event.event_id)
        return room, stored

    def _create_ts(self) -> int:
        self._last_create_ts = max(self.clock.now_ms(), self._last_create_ts + 1)
        return self._last_create_ts

    async def after_persist(self, stored: StoredEvent, room: RoomInfo) -> None:
        """Wake local members' /sync, then tell subscribers (federation, push...)."""
        ev = stored.event
        for pre in self.pre_notify_hooks:
            try:
                await pre(stored, room)
            except Exception:
                log.exception("pre_notify hook failed for %s", ev.event_id)
        # Every listed user is local (``local_users``): no loop over a big room's members
        # here, on every event. The target of a membership change too (a leave is no longer
        # listed); listed twice at worst, which wakes no one twice.
        local = list(await self.members.local_users(room.room_nid, self.server_name))
        if ev.type == MEMBER and ev.state_key is not None:
            if ev.state_key.endswith(":" + self.server_name):
                local.append(ev.state_key)
        if stored.stream_ordering is not None:  # an outlier moves no stream
            # The room id too: /events peeking into a world-readable room listens on it.
            self.signal.changed(EVENTS, stored.stream_ordering, [*local, room.room_id])
        for hook in self.event_persisted_hooks:
            try:
                await hook(stored, room)
            except Exception:
                log.exception("event_persisted hook failed for %s", ev.event_id)
