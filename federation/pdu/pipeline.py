"""The inbound PDU pipeline (server-server "Checks performed on receipt of a PDU").

Design note
-----------
One PDU at a time per room, under ``RoomService.lock`` (the room's single
writer); rooms proceed concurrently. No network call is made under the lock
(DESIGN rule 3): a slow or hostile server must not stall local users' sends
in the room (issue 9, head-of-line blocking). So the network comes first::

    handle(origin, pdu)
      acl(origin) -> parse (1, 3) -> signatures (2)
      known? -> done
      prefetch (no room lock; outliers stored under their own short lock):
        fetch_auth.ensure           missing auth events, stored as outliers
        get_missing_events          missing prev events (up to a limit),
                                    and the auth events of each; a prev of
                                    the pushed event still missing -> refused
                                    (not stored; its sender will not tell)
        /state_ids for prevs of the fetched events still missing (gaps),
                                    their events as outliers
      lock(room):                   re-check: everything read again here
        known?  -> done
        each prefetched prev event, oldest first, then the event itself:
          state_at_incoming         state before it (resolving forks/gaps)
          checks.check_event        4, 5 reject; 6 soft-fails
          current state             resolved across the new extremities
          EventPersister.persist    one transaction
      unlock -> RoomService.after_persist (notify clients, hooks) for shown events
      state resolution found a hole (MissingEvents)?
        -> fetch those events from the origin (bounded), lock, try once more;
           still missing: the event is refused, logged once with the origin

A room joined with partial state (``federation.membership.partial_state``)
lacks most memberships until its resync: a membership the auth rules read that
the state does not hold is then taken from the event's own auth events (which
passed step 4) for steps 5 and 6, instead of reading as "not in the room".

Every event refused (dropped, rejected, or left without auth events or
state), soft-failed or redacted for a bad content hash is logged once, at
INFO, with the server it came from and never its content.

Rejected events are stored (so they are never fetched again, and later
events may cite them) but get no stream position, like soft-failed ones:
neither ever reaches a client.

Late events and gaps: prev events fetched by get_missing_events get the next
stream positions, i.e. arrival order, which is the order /sync must follow
(client-server spec, "Syncing": arrival time; clients de-duplicate), so a
client holding a sync token still receives them. /messages orders by
(depth, stream_ordering) and shows them in their place in the graph. A gap
beyond MISSING_EVENTS_LIMIT stays a hole in the timeline (its state is
bridged with /state_ids); /messages fills it with /backfill when a client
pages into it (``federation.pdu.backfill``), with negative positions that
no sync token covers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.keyring import Keyring
from federation.pdu.acl import server_allowed
from federation.pdu.acl_cache import SERVER_ACL, ServerAclCache, may_change_acl
from federation.pdu.fetch import EventFetcher
from federation.pdu.fetch_auth import MAX_SINGLE_FETCHES, AuthFetcher
from federation.pdu.graph import AuthChainTooBig, IdMap, RoomGraph, diff
from federation.pdu.parse import PduDropped, room_id_of
from federation.pdu.resolve import resolve
from federation.pdu.state_at_incoming import StateAtIncoming, StateBefore, StateIds
from homeserver.events.model import Event
from homeserver.events.signing import compute_event_id
from homeserver.rooms.auth import auth_types_for_event
from homeserver.rooms.auth.constants import CREATE_KEY, MEMBER
from homeserver.rooms.checks import EventRejected, check_event
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.service import RoomService
from homeserver.rooms.state_res import MissingEvents
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.storage.database import Queries

log = logging.getLogger("myelin.federation.pdu")

MISSING_EVENTS_LIMIT = 10
MAX_GAPS = 5
MISSING_FOR_RESOLUTION = "Missing events for state resolution"
MISSING_AUTH = "Missing auth events"
NO_STATE = "Cannot determine the state before the event"
PREVS_NOT_GIVEN = "The sending server did not give this event's prev events"


# ("group", state group, keys) or ("current", None, keys) -> those keys' events.
ReadMemo = dict[tuple[str, int | None, tuple[tuple[str, str], ...]], dict[tuple[str, str], Event]]


@dataclass
class Prefetched:
    """What the network gave before the room's lock was taken."""

    # Missing prev events (get_missing_events), oldest first.
    prevs: list[Event] = field(default_factory=list)
    # The state after a prev event we still lack, as the sender sees it.
    gaps: dict[str, IdMap] = field(default_factory=dict)


class PduPipeline:
    def __init__(self, rooms: RoomService, fetcher: EventFetcher, keyring: Keyring) -> None:
        self.rooms = rooms
        self.fetcher = fetcher
        self.graph = RoomGraph(rooms)
        self.auth = AuthFetcher(rooms, self.graph, fetcher, keyring)
        self.state = StateAtIncoming(self.graph, fetcher, self.auth)
        self.acls = ServerAclCache()
        # Whether a room was joined with partial state and still lacks members
        # (``federation.membership.partial_state``); set by FederatedRooms.
        self.is_partial: Callable[[int], Awaitable[bool]] | None = None

    async def server_allowed(self, room: RoomInfo, server_name: str) -> bool:
        async def read() -> dict[str, Any] | None:
            acl = await self.rooms.current_state_event(room, SERVER_ACL)
            return None if acl is None else acl.event.content

        return server_allowed(await self.acls.get(room.room_nid, read), server_name)

    async def on_persisted(
        self, q: Queries, stored: StoredEvent, plan: PersistPlan
    ) -> AfterCommit | None:
        """The persister's in-transaction hook: an event that may change its room's
        ACL drops the cached one now and, once committed, everywhere."""
        ev = stored.event
        if not may_change_acl(ev.type, ev.state_key, bool(plan.current_delta)):
            return None
        room_nid = stored.room_nid
        self.acls.drop([room_nid])
        return lambda _committed: self.acls.changed([room_nid])

    async def handle_pdu(
        self, origin: str, pdu: Any, checked: tuple[Event, bool] | None = None
    ) -> str | None:
        """One PDU of an inbound transaction: None when accepted (or already known),
        else the error string for the transaction's per-PDU result. ``checked``:
        steps 1-3 already passed for this PDU in this room (``federation.pdu.chain``)."""
        try:
            room = await self.rooms.rooms.get_room(room_id_of(pdu))
        except PduDropped as e:
            return _refused(origin, pdu, None, e.reason)
        if room is None:
            return _refused(origin, pdu, None, "Unknown room")
        if not await self.server_allowed(room, origin):
            return _refused(origin, pdu, room, "Server is denied by the room's ACL")
        try:
            event, redacted = checked or await self.fetcher.check(pdu, room.version)
        except PduDropped as e:
            _refused(origin, pdu, room, e.reason)
            return "Invalid event or signature"
        if redacted:
            log.info("event %s from %s failed its content hash: redacted", event.event_id, origin)
        if await self.rooms.events.by_id(event.event_id) is not None:
            return None
        ahead = await self._prefetch(origin, room, event)
        if ahead is None:
            return _refused(origin, pdu, room, PREVS_NOT_GIVEN)
        missing: frozenset[str] = frozenset()
        for attempt in range(2):
            shown: list[StoredEvent] = []
            try:
                async with self.rooms.lock(room.room_id):
                    error = await self.process(origin, room, event, shown, ahead=ahead)
                if error is not None and await self.rooms.events.by_id(event.event_id):
                    # Rejected by the auth rules and stored as rejected: the PDU was
                    # handled, and its result is empty (as Synapse answers; the spec's
                    # ``error`` is for a PDU that could not be processed).
                    return None
                return error  # process logged it, once, with the origin
            except MissingEvents as e:
                missing = e.event_ids
            except AuthChainTooBig as e:
                log.warning("refused %s from %s: %s", event.event_id, origin, e.error)
                return e.error
            finally:
                for stored in shown:
                    await self.rooms.after_persist(stored, room)
            if attempt == 0 and not await self._fetch_events(origin, room, missing):
                break
        log.warning(
            "refused %s from %s: %d events its state resolution needs cannot be had",
            event.event_id,
            origin,
            len(missing),
        )
        return MISSING_FOR_RESOLUTION

    async def _prefetch(self, origin: str, room: RoomInfo, event: Event) -> Prefetched | None:
        """The network part of receipt, before the room's lock: auth events,
        missing prev events (and their auth events), the state at gaps.

        None when the event was pushed with prev events that get_missing_events
        does not give either: the sender knows them and will not tell, and an
        event whose state we would have to take from that sender's word (it may
        become the room's only extremity) is refused at once, never bridged
        with /state_ids. Only the earliest of the events get_missing_events
        returns may have their own prevs missing; the state there is asked for."""
        ahead = Prefetched()
        lacking = await self.graph.missing(event.prev_event_ids)
        if lacking:
            ext = [s.event.event_id for s in await self.rooms.events.extremities(room.room_nid)]
            got = await self.fetcher.missing_events(
                origin, room.room_id, ext, [event.event_id], MISSING_EVENTS_LIMIT, room.version
            )
            ahead.prevs = sorted(
                (e for e in got if e.event_id != event.event_id), key=lambda e: e.depth
            )
            given = {e.event_id for e in ahead.prevs}
            if any(prev_id not in given for prev_id in lacking):
                return None
        ahead.gaps = await self.prefetch_batch(origin, room, [*ahead.prevs, event])
        return ahead

    async def prefetch_batch(
        self,
        origin: str,
        room: RoomInfo,
        events: list[Event],
        max_gaps: int = MAX_GAPS,
        state_ids: Mapping[str, StateIds | None] | None = None,
    ) -> dict[str, IdMap]:
        """For events about to be processed together (oldest first): their auth
        events (those among the batch come with it), then the state after each
        prev event that is neither in the timeline nor in the batch (the gaps; an
        outlier, e.g. fetched as an auth event just now, is one). ``state_ids``: the
        origin's ``/state_ids`` answers at gaps, asked for earlier (``gaps``)."""
        batch = {e.event_id for e in events}
        for e in events:
            await self.auth.ensure(origin, room, e, batch)
        states: dict[str, IdMap] = {}
        for prev_id in (await self.gaps(events))[:max_gaps]:
            answer = None if state_ids is None else state_ids.get(prev_id)
            if answer is not None:
                after = await self.state.state_from(origin, room, prev_id, answer)
            else:  # not asked for yet, or the answer failed: ask (again)
                after = await self.state.state_after_gap(origin, room, prev_id)
            if after is not None:
                states[prev_id] = after
        return states

    async def gaps(self, events: list[Event]) -> list[str]:
        """The prev events of ``events`` (oldest first) that are neither in the timeline
        nor among them, in order: where the state must come from the origin."""
        batch = {e.event_id for e in events}
        gaps: list[str] = []
        for e in events:
            for prev_id in await self.graph.not_in_timeline(e.prev_event_ids):
                if prev_id not in batch and prev_id not in gaps:
                    gaps.append(prev_id)
        return gaps

    async def _fetch_events(self, origin: str, room: RoomInfo, ids: frozenset[str]) -> bool:
        """Events state resolution found missing, from the origin (bounded), stored
        as outliers; whether any was stored."""
        got: list[Event] = []
        for event_id in sorted(ids)[:MAX_SINGLE_FETCHES]:
            found = await self.fetcher.event(origin, event_id, room.version)
            if found is not None:
                await self.auth.ensure(origin, room, found)
                got.append(found)
        return bool(await self.auth.store_outliers(room, got))

    async def process(
        self,
        origin: str,
        room: RoomInfo,
        event: Event,
        shown: list[StoredEvent],
        *,
        backfilled: bool = False,
        ahead: Prefetched,
    ) -> str | None:
        """Steps 4-6 and persistence, under the room lock. Appends events that
        reached the timeline to ``shown``.

        ``ahead``: what was fetched before the lock was taken (``handle_pdu``,
        backfill: ``prefetch_batch``; send_join and friends: nothing). Nothing
        here goes to the network: a missing auth event or an unbridged gap
        refuses the event.

        ``backfilled``: history fetched with /backfill (``federation.pdu.backfill``):
        the same checks against its auth events and the state before it, but
        no soft-fail (it is not a candidate for the current state), and it is
        stored beside the timeline (``PersistPlan.backfilled``). An outlier we
        already hold is checked and promoted in place.

        Raises ``MissingEvents`` when state resolution meets a hole."""
        known = await self.rooms.events.by_id(event.event_id)
        if known is not None and not (
            backfilled and known.outlier and known.rejected_reason is None
        ):
            return None
        for prev in ahead.prevs:
            await self.process(origin, room, prev, shown, ahead=Prefetched(gaps=ahead.gaps))
        if await self.graph.missing(event.auth_event_ids):
            return _refused(origin, event.pdu, room, MISSING_AUTH)
        before = await self.state.state_before(room, event, ahead.gaps)
        if before is None:
            return _refused(origin, event.pdu, room, NO_STATE)
        stored, error = await self._check_and_persist(room, event, before, backfilled)
        if stored.stream_ordering is not None:
            shown.append(stored)
        if error is not None:
            log.info("rejected %s from %s: %s", event.event_id, origin, error)
        elif stored.soft_failed:
            log.info("soft-failed %s from %s", event.event_id, origin)
        return error

    async def _state_for_keys(
        self, before: StateBefore, keys: list[tuple[str, str]], reads: ReadMemo | None = None
    ) -> dict[tuple[str, str], Event]:
        if before.ids is None:
            memo_key = ("group", before.group, tuple(keys))
            if reads is not None and memo_key in reads:
                return reads[memo_key]
            found = await self.rooms.state_at(before.group, keys)
            at_group = {k: s.event for k, s in found.items()}
            if reads is not None:
                reads[memo_key] = at_group
            return at_group
        wanted = {k: before.ids[k] for k in keys if k in before.ids}
        events = await self.graph.events_of(wanted.values())
        return {k: events[i] for k, i in wanted.items() if i in events}

    async def _check_and_persist(
        self, room: RoomInfo, event: Event, before: StateBefore, backfilled: bool = False
    ) -> tuple[StoredEvent, str | None]:
        plan, reason = await self.check(room, event, before, backfilled)
        if reason is None and not plan.soft_failed and not backfilled:
            plan = await self._with_current_state(room, event, before, plan)
        stored = await self.rooms.persister.persist(plan, room.room_nid)
        return stored, reason

    async def check(
        self,
        room: RoomInfo,
        event: Event,
        before: StateBefore,
        backfilled: bool = False,
        reads: ReadMemo | None = None,
    ) -> tuple[PersistPlan, str | None]:
        """Steps 4-6 for one event: its persist plan (the state it sits on, soft-failed
        or not; the current state untouched) and the reason it is rejected, if it is.

        ``reads``: state reads shared by events checked together on the same state
        (a chain of messages, ``federation.pdu.chain``), each read once."""
        rv = room.version
        keys = auth_types_for_event(event.type, event.state_key, event.sender, event.content, rv)
        keys = [*keys, CREATE_KEY]
        if event.is_state():
            keys.append(event.state_tuple())
        state_before = await self._state_for_keys(before, keys, reads)
        if backfilled:
            current = state_before  # history: never soft-failed against today's state
        else:
            current = await self._current_for_keys(room, keys, reads)
            if _same_events(current, state_before):
                current = state_before  # the linear case: no third run of the auth rules
        auth = await self.rooms.events.by_ids(event.auth_event_ids)
        rejected_auth = {i for i, s in auth.items() if s.rejected_reason is not None}
        if self.is_partial is not None and await self.is_partial(room.room_nid):
            state_before, current = _partial_memberships(
                keys, state_before, current, auth.values(), backfilled
            )
        create = state_before.get(CREATE_KEY) or await self.auth.create_event(room)
        reason: str | None = None
        soft_failed = False
        try:
            result = await check_event(
                event,
                auth_events=[s.event for s in auth.values()],
                state_before=state_before,
                current_state=current,
                create_event=create,
                keys=self.auth.keys,
                rejected_event_ids=rejected_auth,
                # Every event reaching here passed EventFetcher.check (steps 1-3)
                # when it was received or fetched.
                receipt_checked=True,
            )
            soft_failed = result.soft_fail_reason is not None
        except EventRejected as e:
            reason = f"{e.step}: {e.reason}"
        replaced = state_before.get(event.state_tuple()) if event.is_state() else None
        replaced_stored = (
            None if replaced is None else await self.rooms.events.by_id(replaced.event_id)
        )
        plan = PersistPlan(
            event=event,
            prev_nids=before.prev_nids,
            state_group_before=before.group,
            replaces_nid=None if replaced_stored is None else replaced_stored.event_nid,
            soft_failed=soft_failed,
            state_delta_before=before.delta,
            rejected_reason=reason,
            backfilled=backfilled,
        )
        return plan, reason

    async def _current_for_keys(
        self, room: RoomInfo, keys: list[tuple[str, str]], reads: ReadMemo | None
    ) -> dict[tuple[str, str], Event]:
        memo_key = ("current", None, tuple(keys))
        if reads is not None and memo_key in reads:
            return reads[memo_key]
        found = {k: s.event for k, s in (await self.rooms.current_state(room, keys)).items()}
        if reads is not None:
            reads[memo_key] = found
        return found

    async def _with_current_state(
        self, room: RoomInfo, event: Event, before: StateBefore, plan: PersistPlan
    ) -> PersistPlan:
        """The room's current state after the event: its own state when it succeeds
        every extremity (the linear case), else the resolution of the states of
        the new extremities."""
        old = await self.rooms.events.extremities(room.room_nid)
        remaining = [s for s in old if s.event_nid not in before.prev_nids]
        linear = (
            before.ids is None
            and not remaining
            and len(old) == 1
            and old[0].event_nid in before.prev_nids
        )
        if linear:
            return plan
        after: IdMap = (
            dict(before.ids) if before.ids else await self.graph.ids_at_group(before.group)
        )
        if event.is_state():
            after[event.state_tuple()] = event.event_id
        sets = [after] + [await self.graph.ids_at_group(s.state_group) for s in remaining]
        resolved = await resolve(self.graph, room.version, sets, {event.event_id: event})
        own = event.state_tuple() if event.is_state() else None
        in_current = own is not None and resolved.get(own) == event.event_id
        if in_current:
            assert own is not None
            del resolved[own]
        new_nids = await self.graph.to_nids(resolved)
        cur = await self.rooms.state.current_state(room.room_nid)
        delta = diff(new_nids, cur)
        if own is not None:
            own_nid = (await self.rooms.rooms.key_nids([own])).get(own)
            if own_nid is not None and in_current:
                delta.pop(own_nid, None)
        changed = [n for n in delta.values() if n is not None]
        members = await self.rooms.events.by_nids(changed)
        member_changes = [
            (s.event.state_key or "", s.event.membership or "leave", s.event_nid)
            for s in members.values()
            if s.event.type == MEMBER
        ]
        return PersistPlan(
            event=plan.event,
            prev_nids=plan.prev_nids,
            state_group_before=plan.state_group_before,
            replaces_nid=plan.replaces_nid,
            state_delta_before=plan.state_delta_before,
            current_delta=delta,
            event_in_current=in_current,
            member_changes=member_changes,
        )


def _same_events(a: dict[tuple[str, str], Event], b: dict[tuple[str, str], Event]) -> bool:
    return a.keys() == b.keys() and all(e.event_id == b[k].event_id for k, e in a.items())


def _partial_memberships(
    keys: list[tuple[str, str]],
    state_before: dict[tuple[str, str], Event],
    current: dict[tuple[str, str], Event],
    auth: Iterable[StoredEvent],
    backfilled: bool,
) -> tuple[dict[tuple[str, str], Event], dict[tuple[str, str], Event]]:
    """A room joined with partial state lacks most memberships until its resync: a
    membership the auth rules read and the state does not hold yet is taken from the
    event's own auth events (which passed step 4), rather than read as "not in the
    room". Memberships the state does hold are judged as ever."""
    cited = {
        s.event.state_tuple(): s.event
        for s in auth
        if s.event.type == MEMBER and s.rejected_reason is None
    }
    before = dict(state_before)
    now = dict(current)
    for k in keys:
        if k[0] == MEMBER and k in cited:
            before.setdefault(k, cited[k])
            now.setdefault(k, cited[k])
    return before, (before if backfilled else now)


def _refused(origin: str, pdu: Any, room: RoomInfo | None, reason: str) -> str:
    """Log a PDU that is refused, once, with its origin (never its content); the reason."""
    event_id = None
    if room is not None and isinstance(pdu, dict):
        try:
            event_id = compute_event_id(pdu, room.version)
        except (TypeError, ValueError, KeyError):
            event_id = None
    log.info("refused %s from %s: %s", event_id or "a PDU", origin, reason)
    return reason
