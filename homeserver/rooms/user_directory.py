"""POST /user_directory/search (client-server "User directory").

The spec lets a server choose whom the directory shows; by default Myelin
shows the users who share a room with the searcher or are joined to a public
room (join rule ``public`` or history ``world_readable``), as Synapse does by
default: a private room's members stay private. ``user_directory.
search_all_users`` adds every active, non-guest local account. Matching is
case-insensitive on the user id or display name. Local users are shown with
their profile; remote users with the display name and avatar of their join
event.

Nothing is rebuilt per change: the membership rows and the room rows'
join rule and history visibility are written with the events that change
them, and a search reads them. Rooms from before that (migration 0340) get
their flags once from ``backfill``.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.rooms.store.events_store import EventStore
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.rooms_store import RoomStore
from homeserver.rooms.store.user_directory_store import UserDirectoryStore
from homeserver.storage.database import Database

log = logging.getLogger("myelin.rooms.user_directory")

# Rooms per backfill transaction, and an upper bound on the batches of one run.
_BACKFILL_BATCH = 100
_BACKFILL_MAX_BATCHES = 1_000_000


class UserDirectory:
    def __init__(
        self,
        store: UserDirectoryStore,
        events: EventStore,
        *,
        search_all_users: bool = False,
    ) -> None:
        self.store = store
        self.events = events
        self.search_all_users = search_all_users

    async def search(self, searcher: str, term: str, limit: int) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        if self.search_all_users:
            for local_id, local_name, local_avatar in await self.store.local_users(term, limit + 1):
                found[local_id] = _entry(local_id, local_name, local_avatar)
        visible = await self.store.visible_members(searcher, term, limit + 1)
        remote_nids = [nid for user_id, nid, local, _n, _a in visible if not local]
        joins = await self.events.by_nids(remote_nids) if remote_nids else {}
        for user_id, nid, local, name, avatar in visible:
            if user_id in found:
                continue
            if local:
                found[user_id] = _entry(user_id, name, avatar)
                continue
            s = joins.get(nid)
            c = s.event.content if s is not None else {}
            rname, ravatar = c.get("displayname"), c.get("avatar_url")
            found[user_id] = _entry(
                user_id,
                rname if isinstance(rname, str) else None,
                ravatar if isinstance(ravatar, str) else None,
            )
        ordered = [found[u] for u in sorted(found)]
        return {"results": ordered[:limit], "limited": len(ordered) > limit}


async def backfill(db: Database, rooms: RoomStore, members: MembershipStore) -> int:
    """Set the directory flags and member display names of rooms from before
    migration 0340, a batch of rooms per transaction; the number of rooms done."""
    done = 0
    for _ in range(_BACKFILL_MAX_BATCHES):
        nids = await rooms.rooms_without_directory_flags(_BACKFILL_BATCH)
        if not nids:
            break
        async with db.transaction() as q:
            await members.backfill_displaynames(q, nids)
            await rooms.refresh_directory_flags(q, nids)
        done += len(nids)
    if done:
        log.info("user directory: filled in %d rooms from before migration 0340", done)
    return done


def _entry(user_id: str, name: str | None, avatar: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"user_id": user_id}
    if name:
        out["display_name"] = name
    if avatar:
        out["avatar_url"] = avatar
    return out
