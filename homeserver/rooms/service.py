"""RoomService: the single writer of each room, and the way every local event is made.

Design note
-----------
Events of one room are built and persisted under an asyncio lock keyed by
room id (DESIGN "Linear rooms"); the sends waiting for a room are taken in
batches (group commit, ``send_queue``) and built as a chain::

    send_event ─┐
    join/leave ─┼─> send_queue ─> lock(room) ─> prev = extremities, auth = current state
    createRoom ─┘     ─> for each request: build (hash, sign, id) on the one
                         before ─> checks.check_event against the state before it
                      ─> EventPersister.persist_chain (one transaction, with the
                         outbox rows; push rules are evaluated behind it)
                  unlock ─> each request: pre_notify_hooks ─> signal.changed(local
                         members) ─> event_persisted_hooks

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
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nacl.signing import VerifyKey

from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, forbidden
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth import auth_types_for_event
from homeserver.rooms.auth.constants import CREATE_KEY, MEMBER
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.checks import EventRejected, check_event
from homeserver.rooms.content_policy import ContentPolicy
from homeserver.rooms.persist import EventPersister, NewRoom, PersistPlan, TxnRef
from homeserver.rooms.prechecks import (
    ENCRYPTION,
    build_local_event,
    check_thread_root,
    no_encryption_downgrade,
)
from homeserver.rooms.send_queue import EventRequest, Result, RoomSendQueues
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.rooms_store import RoomInfo, RoomStore, StateKey
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.write_order import (
    MAX_REBUILDS,
    TURN_AFTER,
    TURN_SLOTS,
    RoomMovedOn,
    rebuild_delay,
    room_turn,
)
from homeserver.streams.signal import EVENTS, ChangeSignal

log = logging.getLogger("myelin.rooms")

# Called after an event is durably persisted: (stored event, room).
EventHook = Callable[[StoredEvent, RoomInfo], Awaitable[None]]
# Federation: an invite of a user on another server must be signed by that
# server before it is persisted (server-server "Inviting to a room"). Given
# the built, checked invite and the room, returns the event the invitee's
# server signed (raises MatrixError when it refuses).
InviteExchange = Callable[[Event, RoomInfo], Awaitable[Event]]

MAX_PREV_EVENTS = 10
# Tries to persist a remote invite whose signing ran outside the room lock (see
# _send_remote_invite) before doing the exchange under the lock.
INVITE_EXCHANGE_ATTEMPTS = 3


def not_in_room() -> MatrixError:
    return forbidden("You are not a member of this room")


@dataclass(frozen=True, slots=True)
class _Draft:
    """A new local event, built and checked, not yet persisted."""

    index: int  # its request's place in the batch
    request: EventRequest
    event: Event
    state: dict[StateKey, Event]  # the part of the state before it that was read
    auth_events: list[Event]
    create: Event | None
    replaces: StoredEvent | None  # the state event it replaces (committed: ``send_queue``)


@dataclass(slots=True)
class _Chain:
    """A batch of requests built one on another, and what each ended with so far."""

    room: RoomInfo
    prev: list[StoredEvent]  # the first event's prev events
    extremity_nids: list[int]  # every extremity the chain was built on
    results: list[Result | None]  # None: still to persist (a draft), or a txn retry
    drafts: list[_Draft] = field(default_factory=list)
    same_txn_as: dict[int, int] = field(default_factory=dict)


class _ChainFailed(Exception):
    """The transaction of a chain of several events failed (each is tried alone)."""


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
        self.send_queues = RoomSendQueues(self._run_batch, self.lock)
        # Bounds the rooms this process holds for a whole build (``write_order.room_turn``).
        self._turn_slots = asyncio.Semaphore(TURN_SLOTS)
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

    async def current_state(
        self, room: RoomInfo, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]:
        """The room's current state (all of it, or only ``keys``)."""
        if keys is None:
            return await self._events_for(await self.state.current_state(room.room_nid))
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
    ) -> dict[int, dict[StateKey, StoredEvent]]:
        """``state_at`` for many groups at once (a constant number of statements).
        ``keep(group, key)``: which entries to load, decided on the key before any event
        is read (lazy-loaded members: a big room's other members are never loaded)."""
        wanted = {g for g in groups if g is not None}
        if not wanted:
            return {}
        key_nids = None if keys is None else list((await self.rooms.key_nids(keys)).values())
        by_group = await self.state.keys_at_groups(wanted, key_nids)
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
        event's id without sending again.
        """
        if txn is not None:
            earlier = await self.events.event_for_txn(txn.user_id, txn.device_id, txn.txn_id)
            if earlier is not None:
                return earlier
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
        if self._is_remote_invite(event_type, content, state_key):
            stored = await self._send_remote_invite(req)
        else:
            stored, fresh = await self.send_queues.submit(req)
            if not fresh:
                return stored
            await self.after_persist(stored, room)
        await self.content_policy.settle(verdict, room.room_id, stored.event.event_id)
        return stored

    def _is_remote_invite(
        self, event_type: str, content: dict[str, Any], state_key: str | None
    ) -> bool:
        return (
            event_type == MEMBER
            and content.get("membership") == "invite"
            and self.invite_exchange is not None
            and state_key is not None
            and not state_key.endswith(":" + self.server_name)
        )

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
                chain = await self._build_chain([req])
                result = chain.results[0]
                if isinstance(result, BaseException):
                    raise result
                if result is not None:
                    return result[0]
                draft = chain.drafts[0]
            signed = await self._exchange_invite(draft)
            async with self.lock(room.room_id):
                if req.txn is not None and (done := await self._txns_sent([req.txn])):
                    return done[req.txn]
                now = [e.event_nid for e in await self.events.extremities(room.room_nid)]
                if now != chain.extremity_nids:
                    continue
                try:
                    stored = (await self._persist_chain(chain, [signed]))[0]
                except RoomMovedOn:  # another process moved it on (``write_order``)
                    continue
            await self.after_persist(stored, room)
            return stored
        async with self.lock(room.room_id):
            result = (await self._run_batch([req]))[0]
        if isinstance(result, BaseException):
            raise result
        await self.after_persist(result[0], room)
        return result[0]

    async def _run_batch(self, reqs: list[EventRequest]) -> list[Result]:
        """Build and persist ``reqs`` (a batch of ``send_queue``; the room's lock is
        held) as one chain: each request's event, or its own error. Built again when
        another process moved the room on meanwhile (``write_order``)."""
        rebuilds = 0
        pinned = any(r.before_persist is not None for r in reqs)
        while True:
            try:
                if rebuilds < TURN_AFTER or pinned:
                    return await self._send_chain(reqs)
                # Lost too often to a busy writer elsewhere: take a turn, the others wait.
                async with self._turn_slots, room_turn(self.persister.db, reqs[0].room.room_nid):
                    return await self._send_chain(reqs)
            except RoomMovedOn:
                rebuilds += 1
                # before_persist acted on this event's id: it cannot be built again.
                if rebuilds >= MAX_REBUILDS or pinned:
                    busy = MatrixError(503, "M_UNKNOWN", "The room is busy; retry")
                    return [busy] * len(reqs)
                await asyncio.sleep(rebuild_delay(rebuilds))
            except _ChainFailed:
                # One event's rows failed the whole transaction: each on its own, so
                # only that one fails.
                return [await self._run_alone(r) for r in reqs]

    async def _run_alone(self, req: EventRequest) -> Result:
        try:
            return (await self._run_batch([req]))[0]
        except Exception as e:
            return e

    async def _send_chain(self, reqs: list[EventRequest]) -> list[Result]:
        """One attempt: build the chain on the room as it is now, then persist it."""
        chain = await self._build_chain(reqs)
        events = []
        for draft in chain.drafts:
            event = await self._exchange_invite(draft)
            if draft.request.before_persist is not None:
                await draft.request.before_persist(event)
            events.append(event)
        if chain.drafts:
            try:
                stored = await self._persist_chain(chain, events)
            except RoomMovedOn:
                raise
            except Exception as e:
                if len(chain.drafts) > 1:
                    log.warning("chain of %d events failed (%s); one by one", len(events), e)
                    raise _ChainFailed from e
                raise
            for draft, s in zip(chain.drafts, stored, strict=True):
                chain.results[draft.index] = (s, True)
        out: list[Result] = []
        for i, result in enumerate(chain.results):
            if result is None:  # a retry of an earlier request's txn id in this batch
                first = chain.results[chain.same_txn_as[i]]
                assert first is not None
                result = first if isinstance(first, BaseException) else (first[0], False)
            out.append(result)
        return out

    async def _build_chain(self, reqs: list[EventRequest]) -> _Chain:
        """Build and check each request's event on the one before it (the first on the
        room's extremities), against the state before it. A request already answered
        (its txn id was sent, or its state is unchanged) gets its event; one that fails
        to build or its checks gets its error; neither is in the chain."""
        room = reqs[0].room
        rv = room.version
        extremities = await self.events.extremities(room.room_nid)
        prev = extremities[-MAX_PREV_EVENTS:]
        wanted: set[StateKey] = {CREATE_KEY}
        for r in reqs:
            wanted.update(auth_types_for_event(r.event_type, r.state_key, r.sender, r.content, rv))
            if r.state_tuple is not None:
                wanted.add(r.state_tuple)
        cur = await self.current_state(room, wanted)
        chain = _Chain(room, prev, [e.event_nid for e in extremities], [None] * len(reqs))
        sent = await self._txns_sent([r.txn for r in reqs if r.txn is not None])
        view = {k: s.event for k, s in cur.items()}
        create = view.get(CREATE_KEY)
        cited = [p.event for p in prev]
        first_of_txn: dict[TxnRef, int] = {}
        for i, req in enumerate(reqs):
            if req.txn is not None and req.txn in sent:
                chain.results[i] = (sent[req.txn], False)
                continue
            if req.txn is not None and req.txn in first_of_txn:
                chain.same_txn_as[i] = first_of_txn[req.txn]
                continue
            key = req.state_tuple
            current = None if key is None else cur.get(key)
            if (
                req.keep_unchanged
                and current is not None
                and current.event.sender == req.sender
                and current.event.content == req.content
            ):
                chain.results[i] = (current, False)
                continue
            if req.txn is not None:
                first_of_txn[req.txn] = i
            if not cited:
                chain.results[i] = not_in_room()
                continue
            try:
                if req.precheck is not None:
                    req.precheck(cur)
                event, auth_events = await self._build(req, cited, view, create)
            except Exception as e:
                chain.results[i] = e
                continue
            chain.drafts.append(_Draft(i, req, event, dict(view), auth_events, create, current))
            cited = [event]
            if key is not None:
                view[key] = event
        return chain

    async def _build(
        self,
        req: EventRequest,
        prev: list[Event],
        view: dict[StateKey, Event],
        create: Event | None,
    ) -> tuple[Event, list[Event]]:
        """Build one event on ``prev`` and check it against the state ``view`` before it."""
        rv = req.room.version
        auth_keys = auth_types_for_event(req.event_type, req.state_key, req.sender, req.content, rv)
        auth_events = [view[k] for k in auth_keys if k in view]
        content = req.content
        fields: dict[str, Any] = {
            "room_id": req.room.room_id,
            "type": req.event_type,
            "sender": req.sender,
            "content": content,
            "prev_events": [p.event_id for p in prev],
            "auth_events": [a.event_id for a in auth_events],
            "depth": max(p.depth for p in prev) + 1,
            "origin_server_ts": self.clock.now_ms(),
        }
        if req.state_key is not None:
            fields["state_key"] = req.state_key
        if req.event_type == "m.room.redaction" and not rv.updated_redaction_rules:
            # Before v11 "redacts" is a top-level key, not part of content.
            fields["content"] = {k: v for k, v in content.items() if k != "redacts"}
            fields["redacts"] = content.get("redacts")
        event = build_local_event(
            self.server_name,
            self.signing_key,
            self.new_event_id(rv),
            rv,
            fields,
            prev + auth_events,
        )
        await self._check(event, auth_events, view, create)
        return event, auth_events

    async def _txns_sent(self, txns: list[TxnRef]) -> dict[TxnRef, StoredEvent]:
        """The events that these txn ids already sent (a client's retries)."""
        if not txns:
            return {}
        ids = await self.events.events_for_txns([(t.user_id, t.device_id, t.txn_id) for t in txns])
        found = await self.events.by_ids(ids.values())
        return {
            t: found[ids[key]]
            for t in txns
            if (key := (t.user_id, t.device_id, t.txn_id)) in ids and ids[key] in found
        }

    async def _persist_chain(self, chain: _Chain, events: list[Event]) -> list[StoredEvent]:
        """Persist the chain's events (the drafts', or the invitee's server's signed copy)
        in one transaction; the first sits on the extremities the chain was built on."""
        room = chain.room
        plans = [
            PersistPlan(
                event=event,
                prev_nids=[p.event_nid for p in chain.prev] if i == 0 else (),
                state_group_before=chain.prev[-1].state_group if i == 0 else None,
                replaces_nid=None if draft.replaces is None else draft.replaces.event_nid,
                txn=draft.request.txn,
                state_delta_before=await self._fork_delta(room, chain.prev) if i == 0 else None,
                expected_extremities=chain.extremity_nids if i == 0 else None,
                built_for_remote_sender=domain_of(event.sender) != self.server_name,
            )
            for i, (draft, event) in enumerate(zip(chain.drafts, events, strict=True))
        ]
        if len(plans) == 1:
            return [await self.persister.persist(plans[0], room.room_nid)]
        return await self.persister.persist_chain(plans, room.room_nid)

    async def _fork_delta(
        self, room: RoomInfo, prev: list[StoredEvent]
    ) -> dict[int, int | None] | None:
        """When the room has several extremities (a fork seen over federation),
        the state before a new event is the resolved current state: its
        difference from the last prev event's state group."""
        if len(prev) < 2:
            return None
        current = await self.state.current_state(room.room_nid)
        group = prev[-1].state_group
        base = await self.state.state_at_group(group) if group is not None else {}
        delta: dict[int, int | None] = {k: v for k, v in current.items() if base.get(k) != v}
        delta.update({k: None for k in base if k not in current})
        return delta or None

    async def _exchange_invite(self, draft: _Draft) -> Event:
        """An invite of a remote user goes through its server first, then the checks again."""
        event = draft.event
        if self.invite_exchange is None or not self._is_remote_invite(
            event.type, event.content, event.state_key
        ):
            return event
        signed = await self.invite_exchange(event, draft.request.room)
        if signed.event_id != event.event_id:
            raise forbidden("The invitee's server changed the invite event")
        await self._check(signed, draft.auth_events, draft.state, draft.create)
        return signed

    async def _check(
        self,
        event: Event,
        auth_events: list[Event],
        state: dict[StateKey, Event],
        create: Event | None,
    ) -> None:
        try:
            await check_event(
                event,
                auth_events=auth_events,
                state_before=state,
                current_state=state,
                create_event=create,
                keys=self.verify_key,
            )
        except EventRejected as e:
            if e.step == "format":
                if "larger than" in e.reason:
                    raise MatrixError(413, "M_TOO_LARGE", "Event is too large") from None
                raise bad_json(f"Invalid event: {e.reason}") from None
            if e.step in ("auth_events", "state_before"):
                raise forbidden(e.reason) from None
            raise

    async def create_room_with(
        self,
        version: RoomVersion,
        creator: str,
        content: dict[str, Any],
        room_id: str | None = None,
    ) -> tuple[RoomInfo, StoredEvent]:
        """Build, check and persist the create event of a new room, and the room row.
        ``room_id``: one chosen beforehand (from ``new_room_id``; not for versions whose
        room id is the create event's hash)."""
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
        await self._check(event, [], {}, None)
        room_id = event.room_id
        async with self.lock(room_id):
            plan = PersistPlan(
                event=event, prev_nids=[], state_group_before=None, replaces_nid=None
            )
            stored = await self.persister.persist(plan, None, NewRoom(room_id, creator))
        room = await self.rooms.get_room(room_id)
        assert room is not None
        await self.after_persist(stored, room)
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
        users = set(await self.members.local_users(room.room_nid, self.server_name))
        if ev.type == MEMBER and ev.state_key is not None:
            users.add(ev.state_key)
        local = [u for u in users if u.endswith(":" + self.server_name)]
        if stored.stream_ordering is not None:  # an outlier moves no stream
            # The room id too: /events peeking into a world-readable room listens on it.
            self.signal.changed(EVENTS, stored.stream_ordering, [*local, room.room_id])
        for hook in self.event_persisted_hooks:
            try:
                await hook(stored, room)
            except Exception:
                log.exception("event_persisted hook failed for %s", ev.event_id)
