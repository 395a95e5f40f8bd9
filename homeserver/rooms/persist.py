"""Persisting one checked event: a single database transaction.

Design note
-----------
The caller (RoomService for local events; the federation receiver later)
holds the room's lock, has run ``checks.check_event`` and decided where the
event sits: its prev events, the state group before it, and whether it
becomes part of the current state. This module then writes, in ONE
transaction::

    event row (+ stream_ordering) -> edges, extremities -> state group
      -> current_state -> room_memberships -> relations, search index
      -> redactions (``homeserver.rooms.redactions``: an applicable redaction
         prunes its stored target and drops its relation and index row; an
         event that a waiting redaction applies to is stored pruned)
      -> txn id
      -> in-transaction hooks (federation: the outbox rows of the PDU)

so an event acknowledged to a client is durable together with everything
derived from it, and a reader never sees half of it. ``persist_chain`` writes
several local events built one on another (``rooms.send_queue``) in one such
transaction: each gets every write above, its own stream position (taken for
the whole chain in one statement) and its own hooks; their edges, search rows
and txn ids go in one statement per table after the last event, and only the
last becomes the room's extremity. Stream orderings are
taken inside the transaction (``EventStore.next_stream_ordering``); on
PostgreSQL last of all, just before the COMMIT (``late_positions``). With
several processes on PostgreSQL the transaction first takes the room's
advisory lock (``homeserver.rooms.write_order``, which also says why the
positions stay gap-free).

``txn_hooks`` run last inside the transaction, with the same connection, for
writes that must commit or roll back with the event (DESIGN rules 3 and 6:
what must reach another server is in the federation outbox the moment the
event exists). A hook returns an optional callback that runs after the
commit (e.g. waking the federation sender) with the event as committed; it
must not do I/O that can fail. The event a hook sees may have no stream
position yet (PostgreSQL takes them last); the callback's has it.

Push rules are not evaluated here: the send answers without them, and
``homeserver.push.evaluation`` evaluates committed events in stream order
behind it (a hook's after-commit callback wakes it), with a durable cursor
of its own, so a crash never leaves an acknowledged event without its
notification counts either.

A *backfilled* event (history fetched for /messages, older than everything
the room has) is stored beside the timeline, never in it: no extremities,
no current state, no memberships, and a negative stream ordering taken from
the ``backfill`` counter (-1, -2, ...), so /sync, which only reads positions
above a non-negative token, never sees it, while /messages, which orders by
(depth, stream_ordering), finds it in its place. An outlier already stored
(an auth or state event of the join) is promoted in place when backfill
brings it as history.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from homeserver.events.derived import forget as forget_derived
from homeserver.events.model import Event
from homeserver.rooms.late_positions import LatePositions, placeholder
from homeserver.rooms.redactions import RedactionApplier, redacted_event
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.relations_store import RelationStore
from homeserver.rooms.store.rooms_store import RoomStore
from homeserver.rooms.store.search_store import SearchStore
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.write_order import hold_room_for_write
from homeserver.storage.database import Database, Queries

# State types whose change updates the room row's user-directory flags.
DIRECTORY_FLAG_TYPES = frozenset({"m.room.join_rules", "m.room.history_visibility"})

log = logging.getLogger("myelin.rooms.persist")


@dataclass(frozen=True, slots=True)
class TxnRef:
    """A client transaction id that must map to the event (idempotent sends)."""

    user_id: str
    device_id: str
    txn_id: str


@dataclass(frozen=True, slots=True)
class NewRoom:
    room_id: str
    creator: str


@dataclass(frozen=True, slots=True)
class PersistPlan:
    event: Event
    prev_nids: Sequence[int]
    state_group_before: int | None
    # The state event this one replaces in the state before it (prev_content).
    replaces_nid: int | None
    soft_failed: bool = False
    txn: TxnRef | None = None
    # Federation: the state before the event differs from ``state_group_before``
    # by this delta (key nid -> event nid, None removes): the event sits after
    # several prev events whose states were resolved, or after a gap.
    state_delta_before: Mapping[int, int | None] | None = None
    # Federation: a change to the room's current state besides this event's
    # own entry (the room forked and the extremities' states were resolved, or
    # the room's state arrived with a join), and whether this (state) event
    # enters the current state at all (it may lose the resolution).
    current_delta: Mapping[int, int | None] | None = None
    event_in_current: bool = True
    # Federation: memberships that the resolved current state changes
    # (user id, membership, event nid), beside this event's own.
    member_changes: Sequence[tuple[str, str, int]] = ()
    # Federation: an auth or state event fetched to check others (an
    # outlier: no stream position, no place in the room's timeline or state),
    # or an event that failed its checks (``rejected_reason``, likewise hidden).
    outlier: bool = False
    rejected_reason: str | None = None
    # An invite or knock for a room this server is not in (out-of-band
    # membership): an outlier, but the target's membership row is written and
    # it gets a stream position so the user's /sync sees it.
    out_of_band: bool = False
    # Built by this server for a sender of another server: only an invite redeeming a
    # third-party invite, by the invited user's server while it is in the room (spec
    # server-server "Third-party invites"). Federation sends it like our own events.
    built_for_remote_sender: bool = False
    # History fetched with /backfill for /messages (see the design note).
    backfilled: bool = False
    # Every extremity of the room the event was built on (local events): with several
    # processes, the persist is abandoned if the room moved on (``write_order``).
    expected_extremities: Sequence[int] | None = None


# Runs inside the persisting transaction (same ``Queries``), after every other
# write; may return a callback to run once the transaction has committed, which is
# given the event as committed (with its stream position, which the hook's may lack).
AfterCommit = Callable[[StoredEvent], None]
TxnHook = Callable[[Queries, StoredEvent, PersistPlan], Awaitable[AfterCommit | None]]


@dataclass(slots=True)
class _Effects:
    """What the writes of one transaction leave to do once it has ended."""

    after_commit: list[tuple[StoredEvent, AfterCommit]] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    promoted: list[int] = field(default_factory=list)
    member_rooms: list[int] = field(default_factory=list)
    # Rooms whose ``current_state`` rows were written (their cached copy is stale).
    state_rooms: list[int] = field(default_factory=list)
    keys: dict[tuple[str, str], int] = field(default_factory=dict)
    # PostgreSQL: the rows that take their stream positions last (``late_positions``).
    late: LatePositions | None = None


@dataclass(slots=True)
class _ChainRows:
    """Rows of a chain's events written with one statement per table after its last
    event, instead of one per event (each is a round trip while the room is held). No
    other write of the transaction reads them, except a redaction its target's search
    row (``_write`` writes those first). Likewise the redactions waiting for the
    chain's events are looked up for all of them at once."""

    # The chain's event ids that a stored redaction waits for (read for all at once).
    redaction_targets: set[str]
    edges: list[tuple[int, str]] = field(default_factory=list)
    search: list[tuple[Event, int]] = field(default_factory=list)
    txn_ids: list[tuple[str, str, str, str, int]] = field(default_factory=list)


def _plain_outliers(plans: Sequence[PersistPlan]) -> bool:
    """Outliers and nothing more (``_write_outliers``): no stream position (out of
    band), no history, no state of their own, no txn id; and no redaction among
    them that a later one of the batch could be waiting for (those go one by one)."""
    return all(
        p.outlier
        and not (p.out_of_band or p.backfilled or p.soft_failed or p.txn or p.member_changes)
        and p.state_delta_before is None
        and p.current_delta is None
        and (p.event.type != "m.room.redaction" or p.rejected_reason is not None)
        for p in plans
    )


def _plain_chain(plans: Sequence[PersistPlan]) -> bool:
    """Several plain timeline events (positions taken at once, ``_ChainRows``)."""
    return len(plans) >= 2 and not any(_hidden(p) or p.backfilled or p.soft_failed for p in plans)


def _hidden(plan: PersistPlan) -> bool:
    """Kept for the DAG only (no place in the timeline or the state)."""
    return plan.outlier or plan.rejected_reason is not None


class EventPersister:
    def __init__(
        self,
        db: Database,
        rooms: RoomStore,
        events: EventStore,
        state: StateStore,
        members: MembershipStore,
        relations: RelationStore | None = None,
        search: SearchStore | None = None,
    ) -> None:
        self.db = db
        self.relations = relations or RelationStore(db)
        self.search = search or SearchStore(db)
        self.rooms = rooms
        self.events = events
        self.state = state
        self.members = members
        self.txn_hooks: list[TxnHook] = []
        self.redactions = RedactionApplier(events, state, rooms)

    async def persist(
        self,
        plan: PersistPlan,
        room_nid: int | None,
        new_room: NewRoom | None = None,
        also: Callable[[Queries, int], Awaitable[None]] | None = None,
    ) -> StoredEvent:
        """Write the event; ``new_room`` creates the room row in the same transaction;
        ``also(q, room_nid)`` runs in it before the event's writes (a partial-state
        join's marker: the join and its marker commit together)."""
        return (await self._persist([plan], room_nid, new_room, also))[0]

    async def persist_chain(self, plans: Sequence[PersistPlan], room_nid: int) -> list[StoredEvent]:
        """Write local events built one on another (group commit, ``rooms.send_queue``) in
        ONE transaction, in order. The first plan says where the chain starts; every later
        one follows the event written just before it: its ``prev_nids`` and
        ``state_group_before`` are taken from that event, whatever the plan says. Each
        event keeps its own stream position, txn id and transaction hooks."""
        return await self._persist(plans, room_nid, None)

    async def persist_outliers(
        self, plans: Sequence[PersistPlan], room_nid: int | None, new_room: NewRoom | None = None
    ) -> list[StoredEvent]:
        """Write outliers (events kept for the graph, no timeline or state place: a
        join's state and auth chain, a resync's) in ONE transaction, each as its plan
        says: unlike ``persist_chain`` no plan is rewritten to follow the one before.
        One commit for a batch, not one per event (thousands in a big room's join).
        ``new_room``: the room's row is written in the same transaction (a first join:
        the room's create event is among the outliers)."""
        assert all(p.outlier for p in plans), "persist_outliers takes outliers only"
        return await self._persist(plans, room_nid, new_room, chained=False)

    async def persist_new_room(
        self,
        plans: Sequence[PersistPlan],
        new_room: NewRoom,
        also: Callable[[Queries, int], Awaitable[None]] | None = None,
    ) -> list[StoredEvent]:
        """A new room (createRoom): its row, its create event (the first plan) and its
        initial events built on it, as one chain in ONE transaction, so a room is never
        left half made. ``also(q, room_nid)`` runs in that transaction after the room row
        is written (the alias, the directory flag); raising there makes nothing."""
        return await self._persist(plans, None, new_room, also)

    async def _persist(
        self,
        plans: Sequence[PersistPlan],
        room_nid: int | None,
        new_room: NewRoom | None,
        also: Callable[[Queries, int], Awaitable[None]] | None = None,
        chained: bool = True,
    ) -> list[StoredEvent]:
        fx = _Effects(late=LatePositions() if self.db.engine == "postgres" else None)
        written: list[StoredEvent] = []
        txn: Queries | None = None
        committed = False
        late_positions: list[int] = []
        try:
            async with self.db.transaction() as q:
                txn = q
                if room_nid is not None:
                    await hold_room_for_write(
                        q, self.db.engine, room_nid, plans[0].expected_extremities
                    )
                if new_room is not None:
                    ev = plans[0].event
                    room_nid = await self.rooms.insert_room(
                        q, new_room.room_id, ev.room_version, new_room.creator, ev.origin_server_ts
                    )
                assert room_nid is not None
                if also is not None:
                    await also(q, room_nid)
                plain = _plain_chain(plans)
                positions = None
                if fx.late is None and plain:
                    positions = await self._positions(q, plans)
                # A chain of plain timeline events writes some rows of all its events
                # together, after the last one (``_ChainRows``).
                rows = None
                if plain:
                    ids = [p.event.event_id for p in plans]
                    rows = _ChainRows(await self.events.redaction_targets_among(q, ids))
                # State keys the chain set so far: a later event that sets one again
                # replaces it (createRoom's initial_state may override its presets).
                chain_state: dict[tuple[str, str], int] = {}
                if not chained and _plain_outliers(plans):
                    written = await self._write_outliers(q, plans, room_nid, fx)
                for i, plan in enumerate(plans if not written else ()):
                    if written and chained:
                        prev = written[-1]
                        key = plan.event.state_tuple() if plan.event.is_state() else None
                        replaces = plan.replaces_nid
                        if replaces is None and key is not None:
                            replaces = chain_state.get(key)
                        plan = replace(
                            plan,
                            prev_nids=[prev.event_nid],
                            state_group_before=prev.state_group,
                            replaces_nid=replaces,
                        )
                    so = positions[i] if positions else None
                    stored = await self._write(q, plan, room_nid, so, fx, rows)
                    written.append(stored)
                    if plan.event.is_state():
                        chain_state[plan.event.state_tuple()] = stored.event_nid
                if rows is not None:
                    await self._write_chain_rows(q, rows)
                    await self.events.replace_extremities(
                        q, room_nid, plans[0].prev_nids, written[-1].event_nid
                    )
                if fx.late is not None and fx.late.nids:
                    # Last: the position row is held from here to the COMMIT only.
                    late_positions = await fx.late.take(q)
                    taken = dict(zip(fx.late.nids, late_positions, strict=True))
                    written = [
                        replace(s, stream_ordering=taken.get(s.event_nid, s.stream_ordering))
                        for s in written
                    ]
            committed = True
        finally:
            if fx.state_rooms:
                self.state.current_changed(fx.state_rooms)
            # Cached member lists are stale either way; a commit's are brought up to date.
            if fx.member_rooms:
                if committed:
                    self.members.local_cache.committed(txn, fx.member_rooms, late_positions)
                else:
                    self.members.local_cache.changed(fx.member_rooms, txn)
        self.rooms.remember_keys(fx.keys)
        if fx.pruned:
            self.events.forget(fx.pruned)
        if fx.promoted:
            # Other processes may hold it cached as the outlier it was (no stream
            # position): their /sync would meet it in the timeline without one.
            self.events.forget(fx.promoted)
        for stored in written:
            # Stored: the cached copy need not keep its byte forms (``events.derived``).
            forget_derived(stored.event)
            self.events._keep(stored)
        final = {s.event_nid: s for s in written}
        for stored, callback in fx.after_commit:
            try:
                callback(final.get(stored.event_nid, stored))
            except Exception:
                log.exception("after-commit callback failed for %s", stored.event.event_id)
        return written

    async def _positions(self, q: Queries, plans: Sequence[PersistPlan]) -> list[int]:
        """Stream positions for a ``_plain_chain``, taken in one statement."""
        last = await self.events.next_stream_orderings(q, len(plans))
        return list(range(last - len(plans) + 1, last + 1))

    async def _write_chain_rows(self, q: Queries, rows: _ChainRows) -> None:
        await self.events.add_edges_many(q, rows.edges)
        await self.search.index_many(q, rows.search)
        rows.search.clear()
        await self.events.add_txn_ids(q, rows.txn_ids)

    async def _write_outliers(
        self, q: Queries, plans: Sequence[PersistPlan], room_nid: int, fx: _Effects
    ) -> list[StoredEvent]:
        """``_write`` for a batch of plain outliers (``_plain_outliers``) with one
        statement per table for the whole batch, not one per event and table: a big
        room's state arrives as thousands of them (a join, a partial-state resync).
        They have no stream position, state group, edges to extremities or state
        rows; what is left is their state keys, rows, prev edges, the redactions
        that waited for them and the transaction hooks."""
        keys = await self.rooms.intern_state_keys(
            q, [p.event.state_tuple() for p in plans if p.event.is_state()]
        )
        fx.keys.update(keys)
        accepted = [p.event.event_id for p in plans if p.rejected_reason is None]
        awaited = await self.events.redaction_targets_among(q, accepted)
        drafts = []
        for plan in plans:
            ev = plan.event
            draft = StoredEvent(
                event=ev,
                event_nid=0,
                room_nid=room_nid,
                stream_ordering=None,
                state_group=plan.state_group_before,
                outlier=True,
                rejected_reason=plan.rejected_reason,
                soft_failed=plan.soft_failed,
                prev_state_event_nid=plan.replaces_nid,
            )
            if ev.event_id in awaited and plan.rejected_reason is None:
                redacted_by = await self.redactions.on_arrival(q, ev, room_nid)
                if redacted_by is not None:
                    draft = replace(draft, event=redacted_event(ev), redacted_by=redacted_by)
            drafts.append(draft)
        written = await self.events.insert_events(q, drafts)
        await self.events.add_edges_many(
            q, [(s.event_nid, p) for s in written for p in s.event.prev_event_ids]
        )
        for stored, plan in zip(written, plans, strict=True):
            for hook in self.txn_hooks:
                callback = await hook(q, stored, plan)
                if callback is not None:
                    fx.after_commit.append((stored, callback))
        return written

    async def _write(
        self,
        q: Queries,
        plan: PersistPlan,
        room_nid: int,
        so: int | None,
        fx: _Effects,
        rows: _ChainRows | None = None,
    ) -> StoredEvent:
        """Every row of one event, inside the caller's transaction. ``so``: its stream
        position when already taken; ``rows``: the event is one of a chain of plain
        timeline events (its edges, search and txn id rows are written with the
        chain's, and the chain's last event alone becomes the room's extremity)."""
        ev = plan.event
        keys = {}
        if ev.is_state():
            keys = await self.rooms.intern_state_keys(q, [ev.state_tuple()])
            fx.keys.update(keys)
        hidden = _hidden(plan)
        # Soft-failed, rejected and outlier events are kept for the DAG but
        # never shown to clients: no stream position.
        visible = not (plan.soft_failed or hidden) or plan.out_of_band
        if so is None and plan.backfilled and visible:
            so = await self.events.next_backfill_ordering(q)
        elif so is None and visible and fx.late is None:
            so = await self.events.next_stream_ordering(q)
        # PostgreSQL: the position is taken just before the COMMIT (``late_positions``).
        late = so is None and visible
        group = plan.state_group_before
        if plan.state_delta_before:
            group = await self.state.create_group(q, room_nid, group, plan.state_delta_before)
        # What is written and what the hooks and caches are handed: one value, so
        # the two cannot drift (its nid comes from the database).
        draft = StoredEvent(
            event=ev,
            event_nid=0,
            room_nid=room_nid,
            stream_ordering=so,
            state_group=group,
            outlier=plan.outlier,
            rejected_reason=plan.rejected_reason,
            soft_failed=plan.soft_failed,
            prev_state_event_nid=plan.replaces_nid,
        )
        stored = None
        if plan.backfilled:
            stored = await self.events.promote_outlier(q, draft)
            if stored is not None:
                fx.promoted.append(stored.event_nid)
        promoted = stored is not None
        awaited = rows is None or ev.event_id in rows.redaction_targets
        if stored is None and plan.rejected_reason is None and awaited:
            # A redaction that arrived first and may apply: store it pruned.
            redacted_by = await self.redactions.on_arrival(q, ev, room_nid)
            if redacted_by is not None:
                draft = replace(draft, event=redacted_event(ev), redacted_by=redacted_by)
        if stored is None:
            stored = await self.events.insert_event(q, draft)
        ev, nid = stored.event, stored.event_nid
        index = fx.late.event(nid) if late and fx.late is not None else 0
        if rows is not None:
            rows.edges.extend((nid, p) for p in ev.prev_event_ids)
        else:
            await self.events.add_edges(q, nid, ev.prev_event_ids)
        if ev.is_state() and not hidden:
            # The state after the event (soft-failed ones too: a later
            # event may cite them, and state resolution then weighs them).
            own: dict[int, int | None] = {keys[ev.state_tuple()]: nid}
            group = await self.state.create_group(q, room_nid, group, own)
            await q.execute("UPDATE events SET state_group = $1 WHERE event_nid = $2", group, nid)
            stored = replace(stored, state_group=group)
        if plan.backfilled and not (plan.soft_failed or hidden):
            if not ev.is_state():
                await self.relations.add(q, ev, nid, room_nid)
            await self.search.index(q, ev, nid)
        elif not (plan.soft_failed or hidden):
            if rows is None:
                await self.events.replace_extremities(q, room_nid, plan.prev_nids, nid)
            delta = dict(plan.current_delta or {})
            in_current = ev.is_state() and plan.event_in_current
            if in_current:
                delta[keys[ev.state_tuple()]] = nid
            if delta:
                fx.state_rooms.append(room_nid)
                await self.state.update_current(q, room_nid, delta)
            if in_current:
                await self._membership(q, ev, room_nid, nid, so, fx, index)
            if plan.member_changes:
                names = await self.members.event_displaynames(
                    q, [n for _u, _m, n in plan.member_changes]
                )
                fx.member_rooms.append(room_nid)
                for user_id, membership, member_nid in plan.member_changes:
                    await self.members.set_membership(
                        q,
                        room_nid,
                        user_id,
                        membership,
                        member_nid,
                        _member_position(so, fx, room_nid, user_id, index),
                        names.get(member_nid),
                    )
            if plan.current_delta or (in_current and ev.type in DIRECTORY_FLAG_TYPES):
                # The user directory's "public room" (join rule, history visibility).
                await self.rooms.refresh_directory_flags(q, [room_nid])
            if not ev.is_state():
                await self.relations.add(q, ev, nid, room_nid)
            if rows is not None:
                rows.search.append((ev, nid))
            else:
                await self.search.index(q, ev, nid)
        if plan.out_of_band and (so is not None or late):
            await self._membership(q, ev, room_nid, nid, so, fx, index)
        if not promoted and not (plan.soft_failed or plan.rejected_reason):
            # The original: a redaction stored pruned still redacts (v10 prunes "redacts").
            if rows is not None and plan.event.type == "m.room.redaction":
                # Its target may be an earlier event of the chain: index that first; or
                # a later one, whose check for redactions waiting for it must then run.
                await self.search.index_many(q, rows.search)
                rows.search.clear()
                if plan.event.redacts is not None:
                    rows.redaction_targets.add(plan.event.redacts)
            target = await self._redaction(q, plan.event, nid, room_nid, group)
            if target is not None:
                fx.pruned.append(target)
        if plan.txn is not None:
            t = plan.txn
            row = (t.user_id, t.device_id, t.txn_id, ev.event_id, ev.origin_server_ts)
            if rows is not None:
                rows.txn_ids.append(row)
            else:
                await self.events.add_txn_id(q, *row)
        for hook in self.txn_hooks:
            callback = await hook(q, stored, plan)
            if callback is not None:
                fx.after_commit.append((stored, callback))
        return stored

    async def _membership(
        self,
        q: Queries,
        ev: Event,
        room_nid: int,
        nid: int,
        so: int | None,
        fx: _Effects,
        index: int,
    ) -> None:
        """The membership row of a member event; ``so`` None: it takes the position of
        the transaction's late event ``index`` (``late_positions``)."""
        if ev.type != "m.room.member" or ev.state_key is None or ev.membership is None:
            return
        fx.member_rooms.append(room_nid)
        name = ev.content.get("displayname")
        await self.members.set_membership(
            q,
            room_nid,
            ev.state_key,
            ev.membership,
            nid,
            _member_position(so, fx, room_nid, ev.state_key, index),
            name if isinstance(name, str) else None,
        )

    async def _redaction(
        self, q: Queries, ev: Event, nid: int, room_nid: int, group: int | None
    ) -> int | None:
        """An accepted redaction: recorded, and applied if its target is here and
        it may apply; the pruned target's nid."""
        if ev.type != "m.room.redaction" or ev.redacts is None:
            return None
        target = await self.redactions.on_redaction(q, ev, nid, room_nid, group)
        if target is not None:
            await self.relations.remove(q, ev.redacts)
            await self.search.remove(q, ev.redacts)
        return target


def _member_position(so: int | None, fx: _Effects, room_nid: int, user_id: str, index: int) -> int:
    """A membership row's position: the event's, or a placeholder (``late_positions``)."""
    if so is not None:
        return so
    assert fx.late is not None and index > 0
    fx.late.member(room_nid, user_id, index)
    return placeholder(index)
