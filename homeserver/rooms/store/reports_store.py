"""Table ``content_reports``: what users reported, kept for the server's admins."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.like import like_pattern


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


# Which rows are reports of one kind: an event, a whole room, or a user.
REPORT_KINDS = {
    "event": "event_id IS NOT NULL",
    "room": "event_id IS NULL AND target_user_id IS NULL AND room_id IS NOT NULL",
    "user": "target_user_id IS NOT NULL",
}
_REPORT_COLUMNS = (
    "report_id, reporter, room_id, event_id, target_user_id, reason, score, received_ts"
)


@dataclass(frozen=True, slots=True)
class Report:
    report_id: int
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None
    received_ts: int


def _report(r: Any) -> Report:
    return Report(
        int(r[0]), r[1], r[2], r[3], r[4], r[5], None if r[6] is None else int(r[6]), int(r[7])
    )


@dataclass(frozen=True, slots=True)
class ReportQuery:
    kind: str
    offset: int = 0
    limit: int = 100
    backwards: bool = True
    reporter: str | None = None
    room_id: str | None = None


class ReportAdminStore:
    """Admins reading and resolving (deleting) reports, paged by offset."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def page(self, q: ReportQuery) -> tuple[list[Report], int]:
        where = [REPORT_KINDS[q.kind]]
        args: list[object] = []
        for column, value in (("reporter", q.reporter), ("room_id", q.room_id)):
            if value is not None:
                args.append(like_pattern(value))
                where.append(f"LOWER({column}) LIKE ${len(args)} ESCAPE '\\'")
        clause = " WHERE " + " AND ".join(where)
        total = int(await self.db.fetchval("SELECT COUNT(*) FROM content_reports" + clause, *args))
        direction = "DESC" if q.backwards else "ASC"
        rows = await self.db.fetchall(
            f"SELECT {_REPORT_COLUMNS} FROM content_reports{clause}"
            f" ORDER BY received_ts {direction}, report_id {direction}"
            f" LIMIT ${len(args) + 1} OFFSET ${len(args) + 2}",
            *args,
            q.limit,
            q.offset,
        )
        return [_report(r) for r in rows], total

    async def get(self, kind: str, report_id: int) -> Report | None:
        row = await self.db.fetchone(
            f"SELECT {_REPORT_COLUMNS} FROM content_reports"
            f" WHERE report_id = $1 AND {REPORT_KINDS[kind]}",
            report_id,
        )
        return None if row is None else _report(row)

    async def delete(self, kind: str, report_id: int) -> bool:
        row = await self.db.fetchone(
            f"DELETE FROM content_reports WHERE report_id = $1 AND {REPORT_KINDS[kind]}"
            " RETURNING report_id",
            report_id,
        )
        return row is not None
