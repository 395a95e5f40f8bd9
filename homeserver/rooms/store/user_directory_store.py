"""User directory queries over ``users``, ``room_memberships`` and ``rooms``.

No table of its own: local users are found in ``users`` (display name and
user id), other users through the rooms that make them visible to the
searcher (a shared room, or a room in the public directory), matched on
their user id. Patterns are case-insensitive substring matches with LIKE
wildcards in the term escaped.
"""

from __future__ import annotations

from homeserver.storage.database import Database


def like_pattern(term: str) -> str:
    escaped = term.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class UserDirectoryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def local_users(self, term: str, limit: int) -> list[tuple[str, str | None, str | None]]:
        """(user id, display name, avatar) of active, non-guest local users matching ``term``."""
        pattern = like_pattern(term)
        rows = await self.db.fetchall(
            "SELECT user_id, displayname, avatar_url FROM users"
            " WHERE deactivated = 0 AND is_guest = 0 AND (LOWER(user_id) LIKE $1 ESCAPE '\\'"
            " OR LOWER(COALESCE(displayname, '')) LIKE $1 ESCAPE '\\')"
            " ORDER BY user_id LIMIT $2",
            pattern,
            limit,
        )
        return [(str(r[0]), r[1], r[2]) for r in rows]

    async def visible_members(self, searcher: str, term: str, limit: int) -> list[int]:
        """Event nids of the join events of users matching ``term`` in rooms the
        searcher shares or in public rooms."""
        rows = await self.db.fetchall(
            "SELECT MIN(m.event_nid) FROM room_memberships m"
            " JOIN rooms r ON r.room_nid = m.room_nid"
            " WHERE m.membership = 'join' AND LOWER(m.user_id) LIKE $2 ESCAPE '\\'"
            " AND (r.is_public = 1 OR m.room_nid IN (SELECT room_nid FROM room_memberships"
            " WHERE user_id = $1 AND membership = 'join'))"
            " GROUP BY m.user_id ORDER BY m.user_id LIMIT $3",
            searcher,
            like_pattern(term),
            limit,
        )
        return [int(r[0]) for r in rows]
