"""Partial-state joins, the joining side's second half: the whole state, later.

Design note
-----------
A join with ``omit_members`` (``RemoteMembership.join``) stores the room's state
without most membership events, marks the room partial (table
``partial_state_rooms``, written in the join's own transaction) and answers the
client at once. This module then completes the state in the background::

    resync(room)                     one task per room, for this process's life
      GET /state?event_id=<join>     from the server joined through, then the
                                     others of servers_in_room (bounded rounds,
                                     growing pauses between them)
      check every event              format, hashes, signatures (EventFetcher.batches;
                                     an event in both the state and its auth chain
                                     once), state and chain together, oldest first
      store outliers                 in chunks, each under the room lock for its
                                     writes only, each checked against its own
                                     auth events (as a full join does); a chunk is
                                     stored (a task) while the next is checked
      lock(room), one transaction:   keys the partial state lacks are added to
                                     the room's snapshot state groups, to the
                                     current state and to room_memberships; the
                                     marker is deleted; an events-stream position
                                     is taken and recorded as the completion
      wake waiters                   /members and friends waiting for the state
      merged_hooks(joined users)     device lists: the merged members are news to
                                     our members' /sync device_lists.changed
      wake /sync                     our members' syncs that left the room out
                                     (no lazy-loading) get it as newly joined

A restart leaves the marker: ``resume`` starts the resync again. Among several
processes (workers) exactly one resyncs a room: the marker carries a claim (its
process and until when, migration 0450), taken with one atomic statement before
every round and renewed while the resync runs; ``start`` in a process that cannot
take it does nothing (its waiters learn of the merge over the signal bus,
``merged_elsewhere``). Every process resumes its own claims when it starts; the
background lease's holder also takes up claims that ran out (a process that died)
every ``claim_ms``. A process that stops cleanly gives its claims up at once. Keys that an
event received meanwhile already set are never overwritten (only missing keys
are added), so a member who left during the resync stays left.

While a room is partial (``is_partial``): inbound PDUs whose sender's membership
(or another membership the auth rules read) is missing from the state are judged
by their own auth events for that key (``federation.pdu.pipeline``), the outbox
sends to ``servers_in_room`` as well as to the servers of the members we know,
and ``wait_full`` lets readers that need the whole member list wait, bounded.
A backfill waits (bounded, ``wait_round``) only for a round under way, and only until
it has stored the state's events (not for the merge): the state at the history before
the join is mostly the member events that round is fetching. The merge then lets such a
backfill store its history first (``history_first``, bounded): a client's read waits on
it. History stored while the room is partial sits on the whole state at its gap, so the
merge leaves its state groups as they are (``PartialStateStore.history_groups``): a
member who joined after a message is never added to the state at it. History that
ends at a gap is rather stored ahead of the round, on the part of its gap's state we
hold (``ahead_of_round``: the round's checks give way meanwhile); the events it lacks
are named (``defer_gap``, migration 0520) and the merge adds them to that history's
snapshot group, in its transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from federation.client import FederationClient, encode_path
from federation.errors import FederationError
from federation.partial_state_store import PartialRoom, PartialStateStore
from federation.pdu.fetch import MAX_STATE_EVENTS, TooManyEvents
from federation.pdu.pipeline import PduPipeline
from homeserver.clock import Clock
from homeserver.events.model import Event
from homeserver.rooms.auth.constants import CREATE, MEMBER
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.write_order import hold_room_for_write
from homeserver.streams.signal import EVENTS

log = logging.getLogger("myelin.federation.partial_state")

# Rounds over the room's servers before this process gives up (the marker stays:
# the next start tries again); pauses between rounds grow up to MAX_PAUSE_S.
MAX_ROUNDS = 30
FIRST_PAUSE_S = 1.0
MAX_PAUSE_S = 300.0
# Outliers stored per lock hold, so local sends in the room keep going.
STORE_CHUNK = 200
STATE_MAX_BYTES = 256 * 1024 * 1024
STATE_TIMEOUT_S = 120.0
# How long a merge lets backfills that waited for its round store their history first.
HISTORY_FIRST_S = 5.0
# How long the round's checks give way to a backfill storing ahead of it, at most.
GIVE_WAY_S = 2.0
# How long a member list read waits for the resync before serving what is here.
MEMBERS_WAIT_S = 60.0
# How long a process's claim on a room's resync lasts unrenewed (config
# worker_lease_ms sets it; renewed every third of it while the resync runs).
CLAIM_MS = 15_000


class PartialStateJoins:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        client: FederationClient,
        rooms: RoomService,
        pipeline: PduPipeline,
        store: PartialStateStore,
    ) -> None:
        self.server_name = server_name
        self.clock = clock
        self.client = client
        self.rooms = rooms
        self.pipeline = pipeline
        self.store = store
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._full: dict[int, asyncio.Event] = {}
        # Called after a merge with the users it added as joined (device lists: their
        # devices are news to our members, whose /sync could not name them before).
        self.merged_hooks: list[Callable[[list[str]], Awaitable[None]]] = []
        # Rooms whose resync is fetching and storing right now: set when the round ends.
        self._rounds: dict[int, asyncio.Event] = {}
        # Backfills of a room between their wait for its round and the end of storing
        # their history (``history_first``), and what a merge waiting for them waits on.
        self._histories = _Inside()
        # Backfills storing their history ahead of the room's round (``ahead_of_round``),
        # what the round, giving way to them, waits on.
        self._ahead = _Inside()
        # This process's name in the claims (``main`` or the worker's; scaleout sets it)
        # and how long a claim lasts unrenewed.
        self.owner = "main"
        self.claim_ms = CLAIM_MS
        self._keeper: asyncio.Task[None] | None = None

    async def is_partial(self, room_nid: int) -> bool:
        return await self.store.is_partial(room_nid)

    def with_partial_servers(
        self, servers_in_room: Callable[[str], Awaitable[set[str]]]
    ) -> Callable[[str], Awaitable[set[str]]]:
        """``servers_in_room`` (by room id, for EDUs) plus, while the room is partial,
        the servers_in_room its resident named at our join."""

        async def servers(room_id: str) -> set[str]:
            found = await servers_in_room(room_id)
            room = await self.rooms.rooms.get_room(room_id)
            partial = None if room is None else await self.store.get(room.room_nid)
            return found if partial is None else found | set(partial.servers_in_room)

        return servers

    def start(self, room: RoomInfo) -> None:
        """Resync ``room`` in the background (once per process at a time), if this
        process holds or can take the room's claim (else another process resyncs it)."""
        task = self._tasks.get(room.room_nid)
        if task is not None and not task.done():
            return
        full = self._full.get(room.room_nid)
        if full is None or full.is_set():
            self._full[room.room_nid] = asyncio.Event()
        self._tasks[room.room_nid] = asyncio.get_running_loop().create_task(self._run(room))
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.get_running_loop().create_task(self._keep_claims())

    def mark_claim_until(self) -> int:
        """Until when the joining process's claim on a new marker lasts."""
        return self.clock.now_ms() + self.claim_ms

    async def resume(self) -> None:
        """Every partial room this process may take (its own claims after a restart,
        claims run out) is resynced here; the claim in ``_run`` decides between
        processes that try at once."""
        for partial in await self.store.claimable(self.owner, self.clock.now_ms()):
            task = self._tasks.get(partial.room_nid)
            if task is not None and not task.done():
                continue
            found = await self.rooms.rooms.rooms_by_nid([partial.room_nid])
            room = found.get(partial.room_nid)
            if room is not None:
                self.start(room)

    async def keep_resuming(self) -> None:
        """The background lease's holder: take up the resyncs whose process died (their
        claims run out), every ``claim_ms``, until cancelled with the lease."""
        while True:
            try:
                await self.resume()
            except Exception:
                log.exception("partial-state resyncs: reading the claims failed")
            await asyncio.sleep(self.claim_ms / 1000)

    def merged_elsewhere(self) -> None:
        """Another process merged a room's whole state (its signal that state groups
        changed in place): release this process's waiters on the rooms now whole."""
        waiting = [nid for nid, full in self._full.items() if not full.is_set()]
        if waiting:
            asyncio.get_running_loop().create_task(self._release_waiters(waiting))

    async def _release_waiters(self, room_nids: list[int]) -> None:
        for nid in room_nids:
            if await self.store.get(nid, remember=False) is None:
                self.store.completed(nid)
                self._full.setdefault(nid, asyncio.Event()).set()

    async def _claim(self, room: RoomInfo) -> bool:
        now = self.clock.now_ms()
        return await self.store.claim(room.room_nid, self.owner, now, now + self.claim_ms)

    async def _keep_claims(self) -> None:
        """Renew this process's claims while any of its resyncs runs (bounded by them)."""
        while any(not t.done() for t in self._tasks.values()):
            await asyncio.sleep(self.claim_ms / 3000)
            running = [n for n, t in self._tasks.items() if not t.done()]
            if not running:
                return
            try:
                await self.store.renew(running, self.owner, self.clock.now_ms() + self.claim_ms)
            except Exception:
                log.exception("partial-state resyncs: renewing the claims failed")

    async def wait_full(self, room: RoomInfo, timeout_s: float) -> bool:
        """Wait until the room's whole state is here (at most ``timeout_s``); whether it is."""
        if await self.store.get(room.room_nid, remember=False) is None:
            return True
        full = self._full.get(room.room_nid)
        if full is None or full.is_set():
            # Set by an earlier partial join of the room (we left, and rejoined).
            full = self._full[room.room_nid] = asyncio.Event()
        self.start(room)
        try:
            await asyncio.wait_for(full.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def wait_for_members(self, room: RoomInfo) -> bool:
        """``RoomService.full_state_wait``: /members and /joined_members wait for the
        resync, at most ``MEMBERS_WAIT_S``."""
        return await self.wait_full(room, MEMBERS_WAIT_S)

    async def close(self) -> None:
        running = [n for n, t in self._tasks.items() if not t.done()]
        tasks = [self._tasks[n] for n in running]
        if self._keeper is not None:
            tasks.append(self._keeper)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if running:
            # Stopping cleanly: another process may take these up at once.
            with contextlib.suppress(Exception):
                await self.store.renew(running, self.owner, 0)

    async def _run(self, room: RoomInfo) -> None:
        pause = FIRST_PAUSE_S
        for _ in range(MAX_ROUNDS):
            partial = await self.store.get(room.room_nid, remember=False)
            if partial is None:
                self.store.completed(room.room_nid)
                break
            if not await self._claim(room):
                # Another process resyncs it (or has just merged it).
                if await self.store.get(room.room_nid, remember=False) is None:
                    break
                return
            try:
                if await self._round(room, partial):
                    break
            except Exception:
                log.exception("partial-state resync of %s failed", room.room_id)
            await asyncio.sleep(pause)
            pause = min(pause * 2, MAX_PAUSE_S)
        else:
            log.warning("partial-state resync of %s: gave up for now", room.room_id)
            return
        self._full.setdefault(room.room_nid, asyncio.Event()).set()

    async def wait_round(self, room: RoomInfo, timeout_s: float) -> None:
        """While a resync round of ``room`` is fetching and storing its state, wait
        until it has stored the state's events or has ended, whether it succeeds or
        not (at most ``timeout_s``); the merge into the room's state, which a backfill
        does not need, goes on meanwhile. No round under way (none needed, or pausing
        between failed rounds): no wait."""
        done = self._rounds.get(room.room_nid)
        if done is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout_s)

    @contextlib.asynccontextmanager
    async def ahead_of_round(self, room: RoomInfo) -> AsyncIterator[bool]:
        """Around a backfill that stores its history ahead of the resync round under way
        (``RoomBackfiller``): whether there is one; if so, the round checks no further
        batch of its events meanwhile (at most ``GIVE_WAY_S``), as those checks would
        take the event loop from the read a client waits on, step after step."""
        nid = room.room_nid
        if nid not in self._rounds:
            yield False
            return
        async with self._ahead.inside(nid):
            yield True

    async def _give_way(self, room_nid: int) -> None:
        """Wait (bounded) for the backfills storing ahead of the round (``ahead_of_round``)."""
        await self._ahead.none_inside(room_nid, GIVE_WAY_S)

    async def defer_gap(self, room: RoomInfo, gap_id: str, origin: str, missing: list[str]) -> None:
        """History is stored ahead of the round on the part of the state at its gap
        ``gap_id`` we hold: the merge adds ``missing`` (``_history_entries``)."""
        await self.store.defer_history(room.room_nid, gap_id, origin, missing)

    async def _fetch_deferred(self, room: RoomInfo) -> None:
        """What the round did not bring of the states at the gaps of history stored
        ahead of it (``defer_gap``; such as an older history visibility), asked of the
        history's origin: before the merge takes the room's lock."""
        for gap, origin, missing in await self.store.deferred_history(room.room_nid):
            await self.pipeline.state.state_from(origin, room, gap, (missing, []))

    async def _history_entries(self, room: RoomInfo) -> list[tuple[str, dict[int, int]]]:
        """Under the room's lock, for each gap of history stored ahead of the round
        (``defer_gap``, read again here: a backfill may have named one since
        ``_fetch_deferred``): the entries its snapshot group lacked, from the events
        stored now."""
        out: list[tuple[str, dict[int, int]]] = []
        for gap, _origin, missing in await self.store.deferred_history(room.room_nid):
            ids, lacking = await self.pipeline.state.held(missing, gap)
            if lacking:
                log.warning(
                    "history of %s at %s: %d state events cannot be had",
                    room.room_id,
                    gap,
                    len(lacking),
                )
            out.append((gap, await self.pipeline.graph.to_nids(ids)))
        return out

    @contextlib.asynccontextmanager
    async def history_first(self, room: RoomInfo) -> AsyncIterator[None]:
        """Around a backfill's wait for a round and the storing of its history: a merge
        of the room that starts meanwhile lets it take the room's lock first (at most
        ``HISTORY_FIRST_S``). A client's read of the history waits on the backfill, and
        the merge (seconds in a big room) would hold the lock in front of it; the merge
        leaves the history's state groups as they are (``history_groups``), so the
        order changes nothing stored."""
        async with self._histories.inside(room.room_nid):
            yield

    async def _after_histories(self, room: RoomInfo) -> None:
        """Wait (bounded) for the backfills of the room inside ``history_first``."""
        await self._histories.none_inside(room.room_nid, HISTORY_FIRST_S)

    async def _round(self, room: RoomInfo, partial: PartialRoom) -> bool:
        """One try through each server; whether the state is complete now."""
        done = self._rounds[room.room_nid] = asyncio.Event()
        try:
            return await self._servers_round(room, partial)
        finally:
            done.set()
            self._rounds.pop(room.room_nid, None)

    async def _servers_round(self, room: RoomInfo, partial: PartialRoom) -> bool:
        join = await self.rooms.events.by_id(partial.join_event_id)
        if join is None or join.stream_ordering is None:
            # The process died between the marker and the join: there is no join to
            # complete (the room has no state of ours either).
            await self.store.clear(room.room_nid)
            return True
        servers = [partial.joined_via, *partial.servers_in_room]
        for server in dict.fromkeys(s for s in servers if s != self.server_name):
            state = await self._fetch(server, room, partial.join_event_id)
            if state is None:
                continue
            await self._merge(room, state, join.stream_ordering, partial.min_state_group)
            log.info("partial-state room %s now has its whole state", room.room_id)
            return True
        return False

    async def _fetch(self, server: str, room: RoomInfo, join_id: str) -> list[Event] | None:
        """The state before our join from ``server``, checked and stored; None on failure."""
        path = encode_path("_matrix", "federation", "v1", "state", room.room_id)
        try:
            resp = await self.client.get_json(
                server,
                path,
                {"event_id": join_id},
                timeout_s=STATE_TIMEOUT_S,
                max_response_bytes=STATE_MAX_BYTES,
            )
        except FederationError as e:
            log.info("state of %s from %s failed: %s", room.room_id, server, e.error)
            return None
        if not isinstance(resp, dict):
            return None
        pdus, chain_pdus = resp.get("pdus"), resp.get("auth_chain")
        del resp  # the checked events are kept, not the raw answer while they are stored
        if not isinstance(pdus, list) or not any(_is_create(p) for p in pdus):
            return None
        chain_pdus = chain_pdus if isinstance(chain_pdus, list) else []
        for what, got in (("the room's state", pdus), ("auth chain", chain_pdus)):
            if len(got) > MAX_STATE_EVENTS:
                refused = TooManyEvents(what, len(got))
                log.warning("state of %s from %s refused: %s", room.room_id, server, refused)
                return None
        # Oldest first (each event after the auth events it cites, as far as depth
        # says), state and chain together: each chunk is stored, checked against its
        # auth events, while the next one is parsed and its signatures verified.
        raw = sorted(
            [(p, False) for p in chain_pdus] + [(p, True) for p in pdus],
            key=lambda pair: _raw_oldest_first(pair[0]),
        )
        del pdus, chain_pdus
        in_state = [is_state for _p, is_state in raw]
        state: dict[str, Event] = {}
        pending: list[Event] = []
        queued: set[str] = set()
        storing: asyncio.Task[object] | None = None
        checking = self.pipeline.fetcher.batches([p for p, _s in raw], room.version, room.room_id)
        del raw
        try:
            async for batch in checking:
                for i, event in batch:
                    if in_state[i]:
                        state.setdefault(event.event_id, event)
                    if event.event_id not in queued:
                        queued.add(event.event_id)
                        pending.append(event)
                while len(pending) >= STORE_CHUNK:
                    chunk, pending = pending[:STORE_CHUNK], pending[STORE_CHUNK:]
                    storing = await self._store_after(storing, room, chunk)
                await self._give_way(room.room_nid)
            storing = await self._store_after(storing, room, pending)
            if storing is not None:
                await storing
        finally:
            await checking.aclose()
            if storing is not None and not storing.done():
                storing.cancel()
                with contextlib.suppress(BaseException):
                    await storing
        if not any(e.type == CREATE for e in state.values()):
            return None
        stored = self._rounds.get(room.room_nid)
        if stored is not None:
            # A backfill waiting for these events goes on now, not after the merge.
            stored.set()
        return list(state.values())

    async def _store_after(
        self, before: asyncio.Task[object] | None, room: RoomInfo, chunk: list[Event]
    ) -> asyncio.Task[object] | None:
        """Store ``chunk`` as outliers once the chunk before it (``before``) is stored
        (its events are auth events of this one's), in a task of its own so the next
        chunk's checks run meanwhile; that task."""
        if before is not None:
            await before
        if not chunk:
            return None
        store = self.pipeline.auth.store_outliers(room, chunk)
        return asyncio.get_running_loop().create_task(store)

    async def _merge(
        self, room: RoomInfo, state: list[Event], join_so: int, min_group: int
    ) -> None:
        """Add what the partial state lacks, in one transaction under the room lock."""
        stored = await self.rooms.events.by_ids(e.event_id for e in state)
        ids = {
            s.event.state_tuple(): i
            for i, s in stored.items()
            if s.rejected_reason is None and s.event.is_state()
        }
        nids = await self.pipeline.graph.to_nids(ids)
        by_nid = {s.event_nid: s for s in stored.values()}
        rooms = self.rooms
        await self._after_histories(room)
        await self._fetch_deferred(room)
        async with rooms.lock(room.room_id):
            deferred = await self._history_entries(room)
            current = await rooms.state.current_state(room.room_nid)
            added = {k: n for k, n in nids.items() if k not in current}
            members = [
                by_nid[n].event for n in added.values() if n in by_nid and _member(by_nid[n].event)
            ]
            async with rooms.persister.db.transaction() as q:
                await hold_room_for_write(q, rooms.persister.db.engine, room.room_nid, None)
                if await self.store.get(room.room_nid, q, remember=False) is None:
                    # Merged by another process meanwhile (its claim and ours overlapped
                    # after a renewal failed): once is all.
                    return
                # History backfilled meanwhile sits on the whole state at its gap.
                history = await self.store.history_groups(q, room.room_nid, min_group)
                await rooms.state.add_to_roots(q, room.room_nid, nids, min_group, history)
                for gap, entries in deferred:
                    # History stored ahead of this round: its own gap's state, whole now.
                    after = await self.store.history_after(q, room.room_nid, gap)
                    for group in await rooms.state.roots(q, after):
                        await rooms.state.add_to_group(q, group, entries)
                await self.store.clear_history_in(q, room.room_nid)
                await rooms.state.add_current(q, room.room_nid, added)
                names = await rooms.members.event_displaynames(q, [n for n in added.values()])
                by_event = {s.event.event_id: s.event_nid for s in stored.values()}
                rows = []
                for ev in members:
                    nid = by_event[ev.event_id]
                    membership = ev.membership or "leave"
                    rows.append((ev.state_key or "", membership, nid, names.get(nid)))
                await rooms.members.add_memberships(q, room.room_nid, join_so, rows)
                # A position of the events stream of its own: /sync sends the room, now
                # whole, as newly joined to a client that does not lazy-load members
                # and whose token is before it (it left the room out until now).
                position = await rooms.events.next_stream_ordering(q)
                await self.store.clear_in(q, room.room_nid, position)
            rooms.state.changed_in_place()
            rooms.state.current_changed([room.room_nid])
            rooms.members.local_cache.changed([room.room_nid])
            self.store.completed(room.room_nid)
        joined = [ev.state_key for ev in members if ev.membership == "join" and ev.state_key]
        for hook in self.merged_hooks:
            try:
                await hook(joined)
            except Exception:
                log.exception("after the partial-state merge of %s", room.room_id)
        # After the hooks: the sync this wakes, which gets the room as newly joined, then
        # also reads their device-list news (its token covers it, for /keys/changes too).
        local = await rooms.members.local_users(room.room_nid, self.server_name)
        rooms.signal.changed(EVENTS, position, [*local, room.room_id])


class _Inside:
    """How many tasks are inside a stretch of code, per room, and a bounded wait for
    none to be (``history_first``, ``ahead_of_round``)."""

    def __init__(self) -> None:
        self._count: dict[int, int] = {}
        self._none: dict[int, asyncio.Event] = {}

    @contextlib.asynccontextmanager
    async def inside(self, room_nid: int) -> AsyncIterator[None]:
        self._count[room_nid] = self._count.get(room_nid, 0) + 1
        try:
            yield
        finally:
            left = self._count.pop(room_nid, 1) - 1
            if left > 0:
                self._count[room_nid] = left
            else:
                done = self._none.pop(room_nid, None)
                if done is not None:
                    done.set()

    async def none_inside(self, room_nid: int, timeout_s: float) -> None:
        if not self._count.get(room_nid):
            return
        done = self._none.setdefault(room_nid, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), timeout_s)


def _member(event: Event) -> bool:
    return event.type == MEMBER and event.state_key is not None and event.membership is not None


def _raw_oldest_first(pdu: object) -> tuple[int, bool]:
    """The order storing needs (by depth, a create event first), read from a PDU not
    yet checked (one that fails its checks is dropped anyway, wherever it sorts)."""
    if not isinstance(pdu, dict):
        return (0, True)
    depth = pdu.get("depth")
    depth = depth if isinstance(depth, int) and not isinstance(depth, bool) else 0
    return (depth, pdu.get("type") != CREATE)


def _is_create(pdu: object) -> bool:
    return isinstance(pdu, dict) and pdu.get("type") == CREATE
