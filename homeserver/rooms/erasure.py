"""Account erasure (deactivation with ``erase: true``): what the user sent is pruned.

Every event the erased user sent is stored in its room version's redacted
form, the same stored form an applied redaction leaves (migration 0055 says
why one stored form): every later reader - /messages, /context, /event,
/sync, search, federation /event - then serves the pruned event, with no
per-read check of who is erased. State events keep what the redaction
algorithm keeps (membership, join rules, power levels), so the room graph
and its auth stay valid. Nothing is kept to undo it: an account reactivated
later does not get its old content back.

Not covered: an event of the erased user that this server first stores
*after* the erasure (history backfilled from another server) is stored as
received.
"""

from __future__ import annotations

import logging

from homeserver.rooms.redactions import redacted_event
from homeserver.rooms.store.events_store import EventStore
from homeserver.rooms.store.purge_store import PurgeStore

log = logging.getLogger("myelin.rooms.erasure")


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
                if stored is None:
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
