"""Applying redactions at the storage layer (rooms/v* "Handling redactions").

Design note
-----------
A redaction is *applied* once, by the persister, inside the transaction that
stores the second of the two events to arrive::

    redaction R persisted (accepted: not rejected, not soft-failed)
      -> row in ``redactions`` (keyed by the target's *id*)
      -> target T stored?  may_apply(R, T, levels at R)?  -> prune T's row now
    any event T persisted
      -> redactions waiting for T's id?  first R with may_apply -> T is stored pruned

"Levels at R" are the power levels and create event of the state at the
redaction (its state group; an outlier redaction has none, so its auth events
stand in). Pruning replaces the stored PDU by the room version's redacted
form and sets ``events.redacted_by`` (migration 0055): from then on every
reader of ``EventStore`` - auth against current state and auth events, state
resolution, /state, /event, federation reads, send_join - gets the redacted
event, and the serializer adds ``unsigned.redacted_because``. A redaction
that may not apply (a powerless sender on another server) is kept in the
table but changes nothing, now or later.
"""

from __future__ import annotations

from collections.abc import Iterable

from homeserver.events.model import Event
from homeserver.events.redaction import redact
from homeserver.rooms.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.rooms.auth.redaction import may_apply_redaction
from homeserver.rooms.store.events_store import EventStore
from homeserver.rooms.store.rooms_store import RoomStore
from homeserver.rooms.store.state_store import StateStore
from homeserver.storage.database import Queries


def redacted_event(event: Event) -> Event:
    """``event`` in its room version's redacted form (same id, hashes, signatures)."""
    return Event(event.event_id, redact(event.pdu, event.room_version), event.room_version)


class RedactionApplier:
    def __init__(self, events: EventStore, state: StateStore, rooms: RoomStore) -> None:
        self.events = events
        self.state = state
        self.rooms = rooms

    async def on_redaction(
        self, q: Queries, redaction: Event, redaction_nid: int, room_nid: int, group: int | None
    ) -> int | None:
        """A redaction was just stored (accepted): prune its target if it is
        here and the redaction may apply. The target's nid when pruned."""
        target_id = redaction.redacts
        if target_id is None:
            return None
        await self.events.add_redaction(q, redaction_nid, target_id)
        target = await self.events.redaction_target(q, target_id)
        if target is None or target.room_nid != room_nid or target.redacted_by is not None:
            return None
        if not await self._may_apply(q, redaction, target.event, group):
            return None
        pruned = redacted_event(target.event)
        if not await self.events.apply_redaction(q, target.event_nid, pruned, redaction_nid):
            return None
        return target.event_nid

    async def on_arrival(self, q: Queries, event: Event, room_nid: int) -> int | None:
        """An event is about to be stored: the nid of the first waiting redaction
        that applies to it (store it pruned), or None."""
        nids = await self.events.pending_redactions(q, event.event_id)
        if not nids:
            return None
        found = await self.events.by_nids(nids)
        for nid in nids:
            r = found.get(nid)
            if r is None or r.room_nid != room_nid:
                continue
            if await self._may_apply(q, r.event, event, r.state_group):
                return nid
        return None

    async def _may_apply(
        self, q: Queries, redaction: Event, target: Event, group: int | None
    ) -> bool:
        power_levels, create = await self._levels(q, redaction, group)
        return may_apply_redaction(redaction, target, power_levels, create)

    async def _levels(
        self, q: Queries, redaction: Event, group: int | None
    ) -> tuple[Event | None, Event | None]:
        """The power levels and create event in the state at the redaction."""
        if group is None:
            found = await self.events.by_ids(redaction.auth_event_ids)
            return _pick(s.event for s in found.values())
        key_nids = await self.rooms.key_nids([POWER_LEVELS_KEY, CREATE_KEY])
        at = await self.state.keys_at_group_in(q, group, key_nids.values())
        found_nids = await self.events.by_nids(at.values())
        return _pick(s.event for s in found_nids.values())


def _pick(events: Iterable[Event]) -> tuple[Event | None, Event | None]:
    power_levels = create = None
    for ev in events:
        if ev.state_tuple() == POWER_LEVELS_KEY:
            power_levels = ev
        elif ev.state_tuple() == CREATE_KEY:
            create = ev
    return power_levels, create
