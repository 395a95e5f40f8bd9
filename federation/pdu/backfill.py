"""Backfill: history older than the room's oldest events, for /messages
(server-server "Backfilling and retrieving missing events").

Design note
-----------
``RoomReader`` (homeserver) calls ``backfill(room, from_ids, limit)`` when a
backwards /messages page meets a gap: prev events the timeline lacks (the
history before our server joined, or a hole get_missing_events left)::

    from_ids (the missing events)
      -> GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=...
         from a server with a joined member (the senders' servers first),
         which applies its history visibility for us
      -> steps 1-3 per PDU (format, content hash, signatures: EventFetcher)
      -> under the room lock, oldest (lowest depth) first:
         PduPipeline.process(backfilled=True): auth events fetched if missing
         (before the lock, with the states at the gaps: prefetch_batch),
         the state before it (its prevs' states; the oldest one's via
         /state_ids), auth rules against its auth events and that state;
         persisted as backfilled: negative stream ordering, no current state,
         no extremities, no memberships, no /sync wake-up, no push.

In a room joined with partial state, while its resync round is under way,
history that ends at a gap is stored at once on the part of the gap's state we
hold (``_store_ahead``); the round's merge adds the rest (migration 0520).

A server that had nothing to give for the same ``from_ids`` is not asked
again for ``EMPTY_RETRY_MS`` (a ``joined``-visibility room shows us nothing
before our join; each page would otherwise ask again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from federation.client import FederationClient, encode_path
from federation.errors import FederationError
from federation.outbound import OutboundRooms
from federation.pdu.graph import IdMap
from federation.pdu.pipeline import MISSING_FOR_RESOLUTION, PduPipeline, Prefetched
from federation.pdu.state_at_incoming import StateIds
from homeserver.clock import Clock
from homeserver.events.model import Event
from homeserver.rooms.auth.constants import MEMBER
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.state_res import MissingEvents
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.federation.backfill")

MAX_BACKFILL = 100
EMPTY_RETRY_MS = 60_000
MAX_SERVERS_TRIED = 3
# How long a backfill into a room joined with partial state waits for a resync round
# under way before fetching the gaps' states itself (``RoomBackfiller.resync_wait``).
PARTIAL_WAIT_S = 20.0
# Gaps whose state ids are asked for while waiting for that round.
EARLY_GAPS = 2
HISTORY = ("m.room.history_visibility", "")


class RoomBackfiller:
    def __init__(
        self,
        server_name: str,
        clock: Clock,
        client: FederationClient,
        pipeline: PduPipeline,
        outbound: OutboundRooms,
    ) -> None:
        self.server_name = server_name
        self.clock = clock
        self.client = client
        self.pipeline = pipeline
        self.rooms = pipeline.rooms
        self.outbound = outbound
        self._empty: dict[tuple[str, tuple[str, ...]], int] = {}
        # Waits, at most the given seconds, for a partial-state room's resync round
        # under way (``PartialStateJoins.wait_round``, bound by ``FederatedRooms``). The
        # history just before a partial-state join needs the state at its oldest event:
        # nearly all the member events that round is fetching and checking at the same
        # moment, so the backfill waits for them rather than fetch and check them a
        # second time on the same CPU. It waits after its own /backfill answer is in
        # and checked (that needs nothing of the round), at most PARTIAL_WAIT_S in all.
        self.resync_wait: Callable[[RoomInfo, float], Awaitable[None]] | None = None
        # Around that wait and the storing after it: a merge of the round lets this
        # backfill store its history first (``PartialStateJoins.history_first``).
        self.history_first: (
            Callable[[RoomInfo], contextlib.AbstractAsyncContextManager[None]] | None
        ) = None
        # Around storing history ahead of such a round, if one is under way (it yields
        # whether; ``PartialStateJoins.ahead_of_round``), and where that history names
        # the events of its gaps' states it lacks, for the round's merge to add
        # (``PartialStateJoins.defer_gap``).
        self.ahead_of_round: (
            Callable[[RoomInfo], contextlib.AbstractAsyncContextManager[bool]] | None
        ) = None
        self.defer_gap: Callable[[RoomInfo, str, str, list[str]], Awaitable[None]] | None = None

    async def _servers(self, room: RoomInfo, from_ids: Sequence[str]) -> list[str]:
        """Joined servers, those that sent the events next to the gap first."""
        joined = await self.outbound.servers_in_room(room)
        joined.discard(self.server_name)
        edges = await self.rooms.events.by_ids(from_ids)
        first = [domain_of(s.event.sender) for s in edges.values()]
        ordered = [d for d in dict.fromkeys(first) if d in joined]
        return ordered + sorted(joined - set(ordered))

    async def backfill(self, room: RoomInfo, from_ids: Sequence[str], limit: int) -> int:
        """Fetch and store history older than ``from_ids``; how many events were stored."""
        key = (room.room_id, tuple(sorted(from_ids)))
        now = self.clock.now_ms()
        if now - self._empty.get(key, -EMPTY_RETRY_MS) < EMPTY_RETRY_MS:
            return 0
        limit = min(max(limit, 1), MAX_BACKFILL)
        wait_until = now + int(PARTIAL_WAIT_S * 1000)  # for all the servers tried
        for server in (await self._servers(room, from_ids))[:MAX_SERVERS_TRIED]:
            stored = await self._from(server, room, from_ids, limit, wait_until)
            if stored:
                self._empty.pop(key, None)
                return stored
        self._empty[key] = now
        return 0

    async def _from(
        self, server: str, room: RoomInfo, from_ids: Sequence[str], limit: int, wait_until: int
    ) -> int:
        path = encode_path("_matrix", "federation", "v1", "backfill", room.room_id)
        try:
            resp = await self.client.get_json(
                server, path, {"v": list(from_ids), "limit": str(limit)}
            )
        except FederationError as e:
            log.info("backfill from %s failed: %s", server, e.error)
            return 0
        pdus = resp.get("pdus") if isinstance(resp, dict) else None
        events = await self.pipeline.fetcher.many(pdus, room.version, room.room_id)
        ordered = sorted(events, key=lambda e: e.depth)
        wait_ms = wait_until - self.clock.now_ms()
        waits = bool(ordered) and self.resync_wait is not None and wait_ms > 0
        ahead_of_merge = (
            self.history_first(room)
            if waits and self.history_first is not None
            else contextlib.nullcontext()
        )
        async with ahead_of_merge:
            return await self._store(server, room, ordered, wait_ms if waits else 0)

    async def _store(self, server: str, room: RoomInfo, ordered: list[Event], wait_ms: int) -> int:
        """Store the checked history ``ordered`` (oldest first), after waiting at most
        ``wait_ms`` for a resync round under way; how many events were stored."""
        if wait_ms > 0 and self.ahead_of_round is not None:
            async with self.ahead_of_round(room) as resyncing:
                ahead = await self._store_ahead(server, room, ordered) if resyncing else None
            if ahead is not None:
                return ahead
        state_ids: dict[str, StateIds | None] = {}
        if wait_ms > 0 and self.resync_wait is not None:
            # The history was fetched and checked while the round went on; what
            # follows (its auth events, the events of the state at its gap) is what
            # the round is storing: that waits for it (past the wait, what lacks is
            # fetched). The ids of the state at its first gaps (where the history
            # meets what we lack, most often one) are asked for meanwhile.
            early = (await self.pipeline.gaps(ordered))[:EARLY_GAPS]
            fetcher = self.pipeline.fetcher
            _waited, *answers = await asyncio.gather(
                self.resync_wait(room, wait_ms / 1000),
                *(fetcher.state_ids(server, room.room_id, gap) for gap in early),
            )
            state_ids = dict(zip(early, answers, strict=True))
        # The network first (auth events, the state at the oldest events' gaps),
        # then the room's lock with none (DESIGN rule 3).
        gaps = await self.pipeline.prefetch_batch(
            server, room, ordered, max_gaps=len(ordered), state_ids=state_ids
        )
        async with self.rooms.lock(room.room_id):
            return await self._process_locked(server, room, ordered, Prefetched(gaps=gaps))

    async def _store_ahead(self, server: str, room: RoomInfo, ordered: list[Event]) -> int | None:
        """Store the history without waiting for the resync round under way: on the
        part of the state at its gaps that we hold (the room's non-member state, the
        history's own auth events, fetched if missing), the events we lack named for
        the round's merge to add (``defer_gap``). The auth rules judge a membership
        the state lacks by the event's own auth events, as for any event of a partial
        room (``federation.pdu.pipeline``). None (nothing stored) where that is not
        enough: a gap's state unknown, an auth event of the history (but memberships)
        or the history visibility not among what we hold, or the room whole by then
        with events still lacking: the caller then waits for the round as before."""
        if self.defer_gap is None or self.pipeline.is_partial is None:
            return None
        gaps = await self.pipeline.gaps(ordered)
        if not gaps or len(gaps) > EARLY_GAPS:
            return None
        fetcher, state = self.pipeline.fetcher, self.pipeline.state
        answers = await asyncio.gather(
            *(fetcher.state_ids(server, room.room_id, gap) for gap in gaps)
        )
        if any(a is None for a in answers):
            return None
        batch = {e.event_id for e in ordered}
        for event in ordered:
            await self.pipeline.auth.ensure(server, room, event, batch)
        for gap in gaps:
            await state.fetch_event(server, room, gap)
        async with self.rooms.lock(room.room_id):
            partial = await self.pipeline.is_partial(room.room_nid)
            held: dict[str, IdMap] = {}
            lacked: dict[str, list[str]] = {}
            for gap, answer in zip(gaps, answers, strict=True):
                assert answer is not None
                held[gap], lacked[gap] = await state.held(answer[0], gap)
            if any(lacked.values()) and not (partial and await self._enough(room, ordered, held)):
                return None
            for gap, lacking in lacked.items():
                if lacking:
                    await self.defer_gap(room, gap, server, lacking)
            return await self._process_locked(server, room, ordered, Prefetched(gaps=held))

    async def _enough(self, room: RoomInfo, ordered: list[Event], held: dict[str, IdMap]) -> bool:
        """Whether the held part of the gaps' states carries what the checks and reads
        of the history need before the merge: every auth event of the history that is
        not a membership (memberships are judged by the event's own auth events while
        the room is partial), and the history visibility if the room has one now."""
        have = {i for ids in held.values() for i in ids.values()} | {e.event_id for e in ordered}
        cited = {a for e in ordered for a in e.auth_event_ids if a not in have}
        found = await self.rooms.events.by_ids(cited)
        if len(found) < len(cited) or any(s.event.type != MEMBER for s in found.values()):
            return False
        if all(HISTORY in ids for ids in held.values()):
            return True
        return not await self.rooms.current_state(room, [HISTORY])

    async def _process_locked(
        self, server: str, room: RoomInfo, ordered: list[Event], ahead: Prefetched
    ) -> int:
        """The pipeline's steps 4-6 and persistence for each event of the history, the
        room's lock held; how many were stored."""
        count = 0
        for event in ordered:
            before = await self.rooms.events.by_id(event.event_id)
            if before is not None and not before.outlier:
                continue
            try:
                error = await self.pipeline.process(
                    server, room, event, [], backfilled=True, ahead=ahead
                )
            except MissingEvents:
                error = MISSING_FOR_RESOLUTION
            if error is None:
                count += 1
            else:
                log.info("backfilled event %s not stored: %s", event.event_id, error)
        return count
