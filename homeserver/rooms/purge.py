"""Purging history (admin purge_history, retention) and whole rooms (admin room delete).

Design note: what a history purge may remove
--------------------------------------------
A purge point is a place in the room's topological order (depth, stream).
Every event at or before it is a candidate, and each is either deleted or
kept but taken off the timeline (``stream_ordering`` set to NULL, which is
how every timeline reader - /messages, /sync, /context, /event - already
recognises an event clients do not see)::

    forward extremity         never touched (the next event cites it)
    state event               kept, off the timeline: current state, auth
                              chains and state groups point at state events,
                              and only state events can be auth events
    local event, delete_local_events false
                              kept, off the timeline (Synapse's default)
    any other event           deleted with its push actions, relations,
                              search row, edges and transaction id

Edges of remaining events that name a deleted event are deleted as well:
/messages backfills where an event's prev event is missing, and purged
history must not come back from another server. Back-pagination therefore
ends cleanly at the purge point. Work happens in batches of
``purge_store.BATCH`` events, each its own transaction under the room's
writer lock (no network call inside it), so sending into the room goes on
between batches.

A room purge deletes every row of the room, children first, then the room.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from homeserver.clock import Clock
from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.purge_store import PurgePoint, PurgeRecord, PurgeStore
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.rooms.purge")

# An outlier has no stream position: "everything at a lower depth" is its point.
_WHOLE_DEPTH = 2**62


class HistoryPurger:
    def __init__(self, rooms: RoomService, store: PurgeStore, clock: Clock) -> None:
        self.rooms = rooms
        self.store = store
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ admin API

    async def start(
        self,
        room_id: str,
        *,
        event_id: str | None,
        before_ts: int | None,
        delete_local: bool,
    ) -> str:
        """Check the request, record it and run it in the background; the purge id."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Room not found")
        point = await self._point(room, event_id, before_ts)
        now = self.clock.now_ms()
        record = PurgeRecord(secrets.token_urlsafe(12), room.room_id, "active", "", now)
        await self.store.save(record)
        task = asyncio.create_task(self._run(record, room, point, delete_local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return record.purge_id

    async def _point(
        self, room: RoomInfo, event_id: str | None, before_ts: int | None
    ) -> PurgePoint | None:
        if event_id is not None:
            found = await self.store.point_of_event(room.room_nid, event_id)
            if found is None:
                raise not_found("Event not found in this room")
            depth, stream = found
            if stream is None:
                return PurgePoint(depth - 1, _WHOLE_DEPTH)
            return PurgePoint(depth, stream - 1)  # strictly before the event
        if before_ts is not None:
            return await self.store.point_before_ts(room.room_nid, before_ts)
        raise invalid_param("Must give purge_up_to_event_id or purge_up_to_ts")

    async def _run(
        self, record: PurgeRecord, room: RoomInfo, point: PurgePoint | None, delete_local: bool
    ) -> None:
        status, error = "complete", ""
        try:
            if point is not None:
                await self.purge(room, point, delete_local)
        except Exception as e:  # recorded for the status endpoint, and logged
            log.exception("purge %s of %s failed", record.purge_id, room.room_id)
            status, error = "failed", (e.error if isinstance(e, MatrixError) else "internal error")
        await self.store.save(
            PurgeRecord(record.purge_id, record.room_id, status, error, record.started_ts)
        )

    async def status(self, purge_id: str) -> PurgeRecord:
        found = None if "\x00" in purge_id else await self.store.get(purge_id)
        if found is None:
            raise not_found("No purge with this purge_id")
        return found

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------ the work

    async def purge(self, room: RoomInfo, point: PurgePoint, delete_local: bool) -> int:
        """Purge history at or before ``point``, batch by batch; events deleted."""
        suffix = ":" + self.rooms.server_name
        after = 0
        deleted = 0
        while True:
            batch = await self.store.candidates(room.room_nid, point, after)
            if not batch:
                return deleted
            after = batch[-1].event_nid
            keep = [
                c.event_nid
                for c in batch
                if c.is_state or (not delete_local and c.sender.endswith(suffix))
            ]
            kept = set(keep)
            drop = [(c.event_nid, c.event_id) for c in batch if c.event_nid not in kept]
            async with self.rooms.lock(room.room_id):
                async with self.store.db.transaction() as q:
                    await self.store.take_off_timeline(q, keep)
                    await self.store.delete_events(q, drop)
            self.rooms.events.forget(c.event_nid for c in batch)
            deleted += len(drop)

    async def purge_room(self, room: RoomInfo) -> None:
        """Delete the room and everything stored about it (after its local members left)."""
        async with self.rooms.lock(room.room_id):
            async with self.store.db.transaction() as q:
                await self.store.drop_room_pointers(q, room.room_nid)
            # Its memberships are gone: so is every process's cached list of local members,
            # and its current state.
            self.rooms.members.local_cache.changed([room.room_nid])
            self.rooms.state.current_changed([room.room_nid])
            while batch := await self.store.room_event_batch(room.room_nid):
                async with self.store.db.transaction() as q:
                    await self.store.delete_events(q, batch)
                self.rooms.events.forget(nid for nid, _ in batch)
            while groups := await self.store.room_state_group_batch(room.room_nid):
                async with self.store.db.transaction() as q:
                    await self.store.delete_state_groups(q, groups)
            async with self.store.db.transaction() as q:
                await self.store.delete_room_row(q, room.room_nid, room.room_id)
            self.rooms.rooms.forget_room(room)
