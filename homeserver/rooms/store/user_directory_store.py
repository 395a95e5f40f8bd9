"""User directory queries over ``users``, ``room_memberships`` and ``rooms``.

No table of its own: users are found through the rooms that make them
visible to the searcher (a shared room, or a public room: join rule public
or history world_readable, kept on the room row by the persister), matched
on their user id, their display name in the room or, for local users, their
profile name. With ``search_all_users`` every local account is found too.
Patterns are case-insensitive substring matches with LIKE wildcards in the
term escaped.
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

    async def visible_members(
        self, searcher: str, term: str, limit: int
    ) -> list[tuple[str, int, bool, str | None, str | None]]:
        """Users matching ``term`` (user id, display name in a room, or local profile name)
        who share a room with the searcher or are joined to a public room (join rule
        public or history world_readable) that a local user is still in (a room this
        server left is no longer kept up to date). One row per user: (user id, nid of a
        join event, whether local, local profile name, local avatar), by user id."""
        rows = await self.db.fetchall(
            "SELECT m.user_id, MIN(m.event_nid), MAX(u.user_id), MAX(u.displayname),"
            " MAX(u.avatar_url) FROM room_memberships m"
            " JOIN rooms r ON r.room_nid = m.room_nid"
            " LEFT JOIN users u ON u.user_id = m.user_id"
            " WHERE m.membership = 'join'"
            " AND (u.user_id IS NULL OR (u.deactivated = 0 AND u.is_guest = 0))"
            " AND (LOWER(m.user_id) LIKE $2 ESCAPE '\\'"
            " OR LOWER(COALESCE(m.displayname, '')) LIKE $2 ESCAPE '\\'"
            " OR LOWER(COALESCE(u.displayname, '')) LIKE $2 ESCAPE '\\')"
            " AND ((m.user_id <> $1 AND m.room_nid IN (SELECT room_nid FROM room_memberships"
            " WHERE user_id = $1 AND membership = 'join'))"
            " OR ((r.join_rule = 'public' OR r.history_visibility = 'world_readable')"
            " AND EXISTS (SELECT 1 FROM room_memberships l JOIN users lu ON lu.user_id = l.user_id"
            " WHERE l.room_nid = m.room_nid AND l.membership = 'join')))"
            " GROUP BY m.user_id ORDER BY m.user_id LIMIT $3",
            searcher,
            like_pattern(term),
            limit,
        )
        return [(str(r[0]), int(r[1]), r[2] is not None, r[3], r[4]) for r in rows]
