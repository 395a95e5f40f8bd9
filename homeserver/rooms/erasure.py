"""Account erasure (deactivation with ``erase: true``): what the user sent is pruned.

Every event the erased user sent is stored in its room version's redacted
form, the same stored form an applied redaction leaves (migration 0055 says
why one stored form): every later reader - /messages, /context, /event,
/sync, search, federation /event - then serves the pruned event, with no
per-read check of who is erased. Nothing is kept to undo it: an account
reactivated later does not get its old content back.

State events are the room's rules, and the stored form is also what auth
checks read: pruning an erased admin's m.room.power_levels would drop its
``invite`` level in room versions before 11, pruning an m.room.create would
drop ``m.federate``. So of the state events only m.room.member events are
pruned (display names, avatars, reasons: personal data; the membership
stays); the user's other state events (name, topic, power levels, ...) are
kept as they are, and the README says so.

Not covered: an event of the erased user that this server first stores
*after* the erasure (history backfilled from another server) is stored as
received.
"""

from __future__ import annotations

import logging

from homeserver.events.model import Event
from homeserver.rooms.redactions import redacted_event
from homeserver.rooms.store.events_store import EventStore
from homeserver.rooms.store.purge_store import PurgeStore

log = logging.getLogger("myelin.rooms.erasure")


def _personal(event: Event) -> bool:
    """Erased: messages and other non-state events, and membership events."""
    return not event.is_state() or event.type == "m.room.member"


class AccountEraser:
    def __init__(self, events: EventStore, store: PurgeStore) -> None:
        self.events = events
        self.store = store

    async def erase(self, user_id: str) -> None:
        """Prune every stored event ``user_id`` sent, batch by batch."""
        after = 0
        pruned_total = 0
        while nids := await self.store.events_sent_by(user_id, after):
            after = nids[-1]
            found = await self.events.by_nids(nids)
            pruned = []
            for nid in nids:
                stored = found.get(nid)
                if stored is None or not _personal(stored.event):
                    continue
                redacted = redacted_event(stored.event)
                if redacted.pdu != stored.event.pdu:
                    pruned.append((nid, redacted))
            if pruned:
                async with self.store.db.transaction() as q:
                    await self.store.store_pruned(q, pruned)
                self.events.forget(nid for nid, _ in pruned)
                pruned_total += len(pruned)
        log.info("erased account: %d events pruned", pruned_total)
