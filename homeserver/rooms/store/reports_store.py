"""Table ``content_reports``: what users reported, kept for the server's admins."""

from __future__ import annotations

from typing import Any

from homeserver.storage.database import Database


class ReportStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(
        self,
        reporter: str,
        ts: int,
        *,
        room_id: str | None = None,
        event_id: str | None = None,
        target_user_id: str | None = None,
        reason: str | None = None,
        score: int | None = None,
    ) -> int:
        value = await self.db.fetchval(
            "INSERT INTO content_reports (reporter, room_id, event_id, target_user_id, reason,"
            " score, received_ts) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING report_id",
            reporter,
            room_id,
            event_id,
            target_user_id,
            reason,
            score,
            ts,
        )
        return int(value)

    async def recent(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest reports, for an admin view."""
        rows = await self.db.fetchall(
            "SELECT report_id, reporter, room_id, event_id, target_user_id, reason, score,"
            " received_ts FROM content_reports ORDER BY report_id DESC LIMIT $1",
            limit,
        )
        keys = ("id", "reporter", "room_id", "event_id", "user_id", "reason", "score", "ts")
        return [{k: r[i] for i, k in enumerate(keys)} for r in rows]
