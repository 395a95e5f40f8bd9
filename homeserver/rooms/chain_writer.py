"""Group commit: a batch of one room's sends built as a chain and persisted at once.

Design note
-----------
``send_queue`` hands ``ChainWriter.run_batch`` the requests waiting for a room,
with the room's lock held. They are built one on another::

    extremities, current state (the keys the batch needs)
      ─> for each request: answered already? (txn id sent, state unchanged)
         ─> build (hash, sign, id) on the one before ─> check_local against
            the state before it (its own error if it fails; not in the chain)
      ─> EventPersister.persist_chain: one transaction, the first event on the
         extremities the chain was built on

If another process moved the room on meanwhile (``write_order.RoomMovedOn``) the
chain is built again, at last taking a turn; if the transaction of several
events fails, each is tried alone so only the bad one fails. Nothing here runs
hooks or wakes /sync: the caller does, after the commit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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
from homeserver.rooms.persist import EventPersister, PersistPlan, TxnRef
from homeserver.rooms.prechecks import build_local_event
from homeserver.rooms.send_queue import EventRequest, Result
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.write_order import (
    MAX_REBUILDS,
    TURN_AFTER,
    TURN_SLOTS,
    RoomMovedOn,
    rebuild_delay,
    room_turn,
)

log = logging.getLogger("myelin.rooms")

# Federation: an invite of a user on another server must be signed by that
# server before it is persisted (server-server "Inviting to a room"). Given
# the built, checked invite and the room, returns the event the invitee's
# server signed (raises MatrixError when it refuses).
InviteExchange = Callable[[Event, RoomInfo], Awaitable[Event]]

MAX_PREV_EVENTS = 10


def not_in_room() -> MatrixError:
    return forbidden("You are not a member of this room")


class ChainHost(Protocol):
    """What the chain is built from: the room service (its stores, keys, clock)."""

    server_name: str
    clock: Clock
    signing_key: SigningKey
    events: EventStore
    state: StateStore
    persister: EventPersister
    invite_exchange: InviteExchange | None

    async def current_state(
        self, room: RoomInfo, keys: Iterable[StateKey] | None = None
    ) -> dict[StateKey, StoredEvent]: ...

    def new_event_id(self, rv: RoomVersion) -> str | None: ...

    async def verify_key(self, server_name: str, key_id: str) -> VerifyKey | None: ...


@dataclass(frozen=True, slots=True)
class Draft:
    """A new local event, built and checked, not yet persisted."""

    index: int  # its request's place in the batch
    request: EventRequest
    event: Event
    state: dict[StateKey, Event]  # the part of the state before it that was read
    auth_events: list[Event]
    create: Event | None
    replaces: StoredEvent | None  # the state event it replaces (committed: ``send_queue``)


@dataclass(slots=True)
class Chain:
    """A batch of requests built one on another, and what each ended with so far."""

    room: RoomInfo
    prev: list[StoredEvent]  # the first event's prev events
    extremity_nids: list[int]  # every extremity the chain was built on
    results: list[Result | None]  # None: still to persist (a draft), or a txn retry
    drafts: list[Draft] = field(default_factory=list)
    same_txn_as: dict[int, int] = field(default_factory=dict)


class _ChainFailed(Exception):
    """The transaction of a chain of several events failed (each is tried alone)."""


async def check_local(
    event: Event,
    auth_events: list[Event],
    state: dict[StateKey, Event],
    create: Event | None,
    keys: Callable[[str, str], Awaitable[VerifyKey | None]],
) -> None:
    """The checks federation runs on received events, for a local one; a rejection
    becomes the client's Matrix error."""
    try:
        await check_event(
            event,
            auth_events=auth_events,
            state_before=state,
            current_state=state,
            create_event=create,
            keys=keys,
        )
    except EventRejected as e:
        if e.step == "format":
            if "larger than" in e.reason:
                raise MatrixError(413, "M_TOO_LARGE", "Event is too large") from None
            raise bad_json(f"Invalid event: {e.reason}") from None
        if e.step in ("auth_events", "state_before"):
            raise forbidden(e.reason) from None
        raise


class ChainWriter:
    """Builds and persists chains of one room's local events (the lock is the caller's)."""

    def __init__(self, host: ChainHost) -> None:
        self.host = host
        # Bounds the rooms this process holds for a whole build (``write_order.room_turn``).
        self._turn_slots = asyncio.Semaphore(TURN_SLOTS)

    def is_remote_invite(
        self, event_type: str, content: dict[str, Any], state_key: str | None
    ) -> bool:
        """An invite of a user on another server, with federation there to ask it."""
        return (
            event_type == MEMBER
            and content.get("membership") == "invite"
            and self.host.invite_exchange is not None
            and state_key is not None
            and not state_key.endswith(":" + self.host.server_name)
        )

    async def run_batch(self, reqs: list[EventRequest]) -> list[Result]:
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
                async with (
                    self._turn_slots,
                    room_turn(self.host.persister.db, reqs[0].room.room_nid),
                ):
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
            return (await self.run_batch([req]))[0]
        except Exception as e:
            return e

    async def _send_chain(self, reqs: list[EventRequest]) -> list[Result]:
        """One attempt: build the chain on the room as it is now, then persist it."""
        chain = await self.build_chain(reqs)
        events = []
        for draft in chain.drafts:
            event = await self.exchange_invite(draft)
            if draft.request.before_persist is not None:
                await draft.request.before_persist(event)
            events.append(event)
        if chain.drafts:
            try:
                stored = await self.persist_chain(chain, events)
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

    async def build_chain(self, reqs: list[EventRequest]) -> Chain:
        """Build and check each request's event on the one before it (the first on the
        room's extremities), against the state before it. A request already answered
        (its txn id was sent, or its state is unchanged) gets its event; one that fails
        to build or its checks gets its error; neither is in the chain."""
        room = reqs[0].room
        rv = room.version
        extremities = await self.host.events.extremities(room.room_nid)
        prev = extremities[-MAX_PREV_EVENTS:]
        wanted: set[StateKey] = {CREATE_KEY}
        for r in reqs:
            wanted.update(auth_types_for_event(r.event_type, r.state_key, r.sender, r.content, rv))
            if r.state_tuple is not None:
                wanted.add(r.state_tuple)
        cur = await self.host.current_state(room, wanted)
        chain = Chain(room, prev, [e.event_nid for e in extremities], [None] * len(reqs))
        sent = await self.txns_sent([r.txn for r in reqs if r.txn is not None])
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
            chain.drafts.append(Draft(i, req, event, dict(view), auth_events, create, current))
            cited = [event]
            if key is not None:
                view[key] = event
        return chain

    async def build_initial(self, create: Event, reqs: list[EventRequest]) -> list[Event]:
        """A new room's initial events (createRoom), each built on the one before, the
        first on its create event, and checked against the state before it. The room is
        not stored yet, so nothing is read; the first failure is raised (nothing of the
        room is made)."""
        view: dict[StateKey, Event] = {CREATE_KEY: create}
        cited = [create]
        events = []
        for req in reqs:
            if req.solo or req.txn is not None or req.keep_unchanged:
                raise ValueError("an initial event is a plain request")
            event, _ = await self._build(req, cited, view, create)
            events.append(event)
            cited = [event]
            if req.state_tuple is not None:
                view[req.state_tuple] = event
        return events

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
            "origin_server_ts": self.host.clock.now_ms(),
        }
        if req.state_key is not None:
            fields["state_key"] = req.state_key
        if req.event_type == "m.room.redaction" and not rv.updated_redaction_rules:
            # Before v11 "redacts" is a top-level key, not part of content.
            fields["content"] = {k: v for k, v in content.items() if k != "redacts"}
            fields["redacts"] = content.get("redacts")
        event = build_local_event(
            self.host.server_name,
            self.host.signing_key,
            self.host.new_event_id(rv),
            rv,
            fields,
            prev + auth_events,
        )
        await check_local(event, auth_events, view, create, self.host.verify_key)
        return event, auth_events

    async def txns_sent(self, txns: list[TxnRef]) -> dict[TxnRef, StoredEvent]:
        """The events that these txn ids already sent (a client's retries)."""
        if not txns:
            return {}
        ids = await self.host.events.events_for_txns(
            [(t.user_id, t.device_id, t.txn_id) for t in txns]
        )
        found = await self.host.events.by_ids(ids.values())
        return {
            t: found[ids[key]]
            for t in txns
            if (key := (t.user_id, t.device_id, t.txn_id)) in ids and ids[key] in found
        }

    async def persist_chain(self, chain: Chain, events: list[Event]) -> list[StoredEvent]:
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
                built_for_remote_sender=domain_of(event.sender) != self.host.server_name,
            )
            for i, (draft, event) in enumerate(zip(chain.drafts, events, strict=True))
        ]
        if len(plans) == 1:
            return [await self.host.persister.persist(plans[0], room.room_nid)]
        return await self.host.persister.persist_chain(plans, room.room_nid)

    async def _fork_delta(
        self, room: RoomInfo, prev: list[StoredEvent]
    ) -> dict[int, int | None] | None:
        """When the room has several extremities (a fork seen over federation),
        the state before a new event is the resolved current state: its
        difference from the last prev event's state group."""
        if len(prev) < 2:
            return None
        current = await self.host.state.current_state(room.room_nid)
        group = prev[-1].state_group
        base = await self.host.state.state_at_group(group) if group is not None else {}
        delta: dict[int, int | None] = {k: v for k, v in current.items() if base.get(k) != v}
        delta.update({k: None for k in base if k not in current})
        return delta or None

    async def exchange_invite(self, draft: Draft) -> Event:
        """An invite of a remote user goes through its server first, then the checks again."""
        event = draft.event
        if self.host.invite_exchange is None or not self.is_remote_invite(
            event.type, event.content, event.state_key
        ):
            return event
        signed = await self.host.invite_exchange(event, draft.request.room)
        if signed.event_id != event.event_id:
            raise forbidden("The invitee's server changed the invite event")
        await check_local(
            signed, draft.auth_events, draft.state, draft.create, self.host.verify_key
        )
        return signed
