"""The PDUs of one room in one inbound transaction, taken together when they chain.

Design note
-----------
A server pushes a room's new events in the order it made them, each usually on
top of the one before. Run one by one through ``PduPipeline.handle_pdu``, each
would read the room's extremities and current state and commit (an fsync on
SQLite) on its own. A *chain* is a run of such PDUs that change no state::

    handle_many(origin, pdus)                      (one room, in order)
      from PDU i: candidates, before any lock:
        room known, origin allowed by the ACL (cached), steps 1-3 (format,
        hashes intact, signatures: once per PDU), a message-like event (no
        state, no redaction) with one prev event: PDU i's any, each next one's
        the PDU before it
      none -> handle_pdu(pdu i) (the whole pipeline), i + 1, try again
      lock(room):
        the room's only forward extremity must be PDU i's prev (linear), else
          PDU i goes through handle_pdu
        cut at the first PDU already stored or citing an auth event not stored
          (those go through handle_pdu: it fetches what is missing)
        steps 4-6 for each, against the state after that extremity (the same
          for all: none of them changes state; the reads are shared), cut
          after the first one rejected or soft-failed (it is stored so, and
          the next ones no longer sit on the room's extremity)
        ONE database transaction (``EventPersister.persist_chain``): each
          persisted as handle_pdu would, prev = the one before
      unlock -> RoomService.after_persist for each, in order

Each PDU is still checked against the state before it, alone: a rejected or
soft-failed one is stored and answered as handle_pdu would, and never fails
the others. Nothing here goes to the network under the lock (DESIGN rule 3).
If the transaction fails (e.g. another process wrote to the room first, on
PostgreSQL: ``RoomMovedOn``), everything in it is rolled back and these PDUs
and the rest of the room's go through handle_pdu one at a time, as before
there were chains (so a failure that repeats costs one chain, not one per PDU).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any

from federation.pdu.parse import PduDropped, room_id_of
from federation.pdu.pipeline import PduPipeline, ReadMemo
from federation.pdu.state_at_incoming import StateBefore
from homeserver.events.model import Event
from homeserver.rooms.persist import PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.federation.pdu")

REDACTION = "m.room.redaction"


@dataclass
class _Progress:
    """One call of ``handle_many``: each PDU's steps 1-3 outcome (event, content hash
    failed) by index, so none is checked twice; and whether a chain was rolled back
    (then the rest go one by one)."""

    checked: dict[int, tuple[Event, bool]] = field(default_factory=dict)
    one_by_one: bool = False


def chains_onto(event: Event, prev_id: str | None) -> bool:
    """A message-like event (no state, no redaction) with one prev event, which is
    ``prev_id`` (None: any)."""
    return (
        not event.is_state()
        and event.type != REDACTION
        and len(event.prev_event_ids) == 1
        and (prev_id is None or event.prev_event_ids[0] == prev_id)
    )


class ChainIngest:
    def __init__(self, pipeline: PduPipeline) -> None:
        self.pipeline = pipeline
        self.rooms = pipeline.rooms

    async def handle_many(self, origin: str, pdus: list[Any]) -> list[str | None]:
        """The results of one room's PDUs of a transaction (as ``handle_pdu`` gives
        them), in order."""
        results: list[str | None] = [None] * len(pdus)
        progress = _Progress()
        i = 0
        while i < len(pdus):
            done = i if progress.one_by_one else await self._chain(origin, pdus, i, progress)
            if done == i:
                checked = progress.checked.get(i)
                results[i] = await self.pipeline.handle_pdu(origin, pdus[i], checked)
                done = i + 1
            i = done
        return results

    async def _candidates(
        self, origin: str, pdus: list[Any], i: int, progress: _Progress
    ) -> tuple[RoomInfo, list[Event]] | None:
        """The chain from PDU i, checked up to step 3 (None: PDU i does not start one)."""
        checked = progress.checked
        try:
            room = await self.rooms.rooms.get_room(room_id_of(pdus[i]))
        except PduDropped:
            return None
        if room is None or not await self.pipeline.server_allowed(room, origin):
            return None
        chain: list[Event] = []
        for k in range(i, len(pdus)):
            pdu = pdus[k]
            if not isinstance(pdu, dict) or pdu.get("room_id") != room.room_id:
                break
            if k not in checked:
                try:
                    checked[k] = await self.pipeline.fetcher.check(pdu, room.version)
                except PduDropped:
                    break  # handle_pdu refuses it, saying why
            event, redacted = checked[k]
            if redacted or not chains_onto(event, chain[-1].event_id if chain else None):
                break
            chain.append(event)
        return (room, chain) if chain else None

    async def _chain(self, origin: str, pdus: list[Any], i: int, progress: _Progress) -> int:
        """Handle a chain starting at PDU i; the index after it (i: none handled)."""
        found = await self._candidates(origin, pdus, i, progress)
        if found is None:
            return i
        room, chain = found
        shown: list[StoredEvent] = []
        try:
            async with self.rooms.lock(room.room_id):
                written = await self._under_lock(origin, room, chain, shown, progress)
        finally:
            for stored in shown:
                await self.rooms.after_persist(stored, room)
        return i + written

    async def _under_lock(
        self,
        origin: str,
        room: RoomInfo,
        chain: list[Event],
        shown: list[StoredEvent],
        progress: _Progress,
    ) -> int:
        """Check and persist the chain's head that sits on the room's only extremity;
        how many PDUs were handled (0: none, they go one by one)."""
        extremities = await self.rooms.events.extremities(room.room_nid)
        if len(extremities) != 1 or extremities[0].event.event_id != chain[0].prev_event_ids[0]:
            return 0
        tip = extremities[0]
        known = await self.rooms.events.by_ids(e.event_id for e in chain)
        stored_auth = await self.rooms.events.by_ids({a for e in chain for a in e.auth_event_ids})
        before = StateBefore(tip.state_group, None, None, [tip.event_nid])
        reads: ReadMemo = {}
        plans: list[PersistPlan] = []
        for event in chain:
            if event.event_id in known or any(a not in stored_auth for a in event.auth_event_ids):
                break
            plan, reason = await self.pipeline.check(room, event, before, reads=reads)
            plans.append(plan)
            if reason is not None or plan.soft_failed:
                break
        if not plans:
            return 0
        # The first sits on the extremity read above (on PostgreSQL the transaction
        # checks it still is: ``write_order``); each next one on the one before.
        plans[0] = replace(
            plans[0], prev_nids=[tip.event_nid], expected_extremities=[tip.event_nid]
        )
        try:
            written = await self.rooms.persister.persist_chain(plans, room.room_nid)
        except Exception as e:
            log.info(
                "a chain of %d PDUs from %s was rolled back (%s); taking them one by one",
                len(plans),
                origin,
                type(e).__name__,
            )
            progress.one_by_one = True
            return 0
        for stored in written:
            if stored.stream_ordering is not None:
                shown.append(stored)
            if stored.rejected_reason is not None:
                log.info(
                    "rejected %s from %s: %s", stored.event.event_id, origin, stored.rejected_reason
                )
            elif stored.soft_failed:
                log.info("soft-failed %s from %s", stored.event.event_id, origin)
        return len(written)
