"""POST /user_directory/search (client-server "User directory").

Results: local users (all active, non-guest accounts of this server) and
users who share a room with the searcher or sit in a public room, matched
case-insensitively on user id or display name. Remote users are matched on
their user id; their display name comes from their join event.
"""

from __future__ import annotations

from typing import Any

from homeserver.rooms.store.events_store import EventStore
from homeserver.rooms.store.user_directory_store import UserDirectoryStore


class UserDirectory:
    def __init__(self, store: UserDirectoryStore, events: EventStore) -> None:
        self.store = store
        self.events = events

    async def search(self, searcher: str, term: str, limit: int) -> dict[str, Any]:
        found: dict[str, dict[str, Any]] = {}
        for local_id, local_name, local_avatar in await self.store.local_users(term, limit + 1):
            found[local_id] = _entry(local_id, local_name, local_avatar)
        member_nids = await self.store.visible_members(searcher, term, limit + 1)
        for s in (await self.events.by_nids(member_nids)).values():
            user_id = s.event.state_key
            if user_id is None or user_id in found:
                continue
            c = s.event.content
            name, avatar = c.get("displayname"), c.get("avatar_url")
            found[user_id] = _entry(
                user_id,
                name if isinstance(name, str) else None,
                avatar if isinstance(avatar, str) else None,
            )
        ordered = [found[u] for u in sorted(found)]
        return {"results": ordered[:limit], "limited": len(ordered) > limit}


def _entry(user_id: str, name: str | None, avatar: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"user_id": user_id}
    if name:
        out["display_name"] = name
    if avatar:
        out["avatar_url"] = avatar
    return out
