"""Consistency of a database that a crashed server left behind, one query per table group.

Each query counts rows that break one invariant of the persistence path
(homeserver/rooms/persist.py): everything derived from an event is written in
the event's own transaction, so no crash may leave half of it.
"""

from __future__ import annotations

import json
import sqlite3

from homeserver.storage.database import Database

# name -> SQL counting violations (must be 0).
CHECKS: dict[str, str] = {
    # Events: every event shown to clients has a stream position, below the counter.
    "visible events without a stream position": (
        "SELECT COUNT(*) FROM events WHERE outlier = 0 AND rejected_reason IS NULL"
        " AND soft_failed = 0 AND stream_ordering IS NULL"
    ),
    "stream positions above the events counter": (
        "SELECT COUNT(*) FROM events WHERE stream_ordering >"
        " (SELECT position FROM stream_positions WHERE stream_name = 'events')"
    ),
    "edges of missing events": (
        "SELECT COUNT(*) FROM event_edges d LEFT JOIN events e ON e.event_nid = d.event_nid"
        " WHERE e.event_nid IS NULL"
    ),
    "rooms without a forward extremity": (
        "SELECT COUNT(*) FROM rooms r WHERE NOT EXISTS"
        " (SELECT 1 FROM forward_extremities f WHERE f.room_nid = r.room_nid)"
    ),
    "extremities that are missing or in another room": (
        "SELECT COUNT(*) FROM forward_extremities f LEFT JOIN events e"
        " ON e.event_nid = f.event_nid WHERE e.event_nid IS NULL OR e.room_nid <> f.room_nid"
    ),
    # State: groups and entries reference what exists.
    "events citing a missing state group": (
        "SELECT COUNT(*) FROM events e LEFT JOIN state_groups g ON g.state_group = e.state_group"
        " WHERE e.state_group IS NOT NULL AND g.state_group IS NULL"
    ),
    "state entries naming missing events": (
        "SELECT COUNT(*) FROM state_group_entries s LEFT JOIN events e"
        " ON e.event_nid = s.event_nid WHERE s.event_nid IS NOT NULL AND e.event_nid IS NULL"
    ),
    "state groups with a missing parent": (
        "SELECT COUNT(*) FROM state_groups g LEFT JOIN state_groups p"
        " ON p.state_group = g.prev_group WHERE g.prev_group IS NOT NULL"
        " AND p.state_group IS NULL"
    ),
    "current state naming missing events or another room's": (
        "SELECT COUNT(*) FROM current_state c LEFT JOIN events e ON e.event_nid = c.event_nid"
        " WHERE e.event_nid IS NULL OR e.room_nid <> c.room_nid"
    ),
    "memberships naming missing events or another room's": (
        "SELECT COUNT(*) FROM room_memberships m LEFT JOIN events e ON e.event_nid = m.event_nid"
        " WHERE e.event_nid IS NULL OR e.room_nid <> m.room_nid"
    ),
    # Push: rows reference their event, at its position.
    "push actions of missing events or at another position": (
        "SELECT COUNT(*) FROM event_push_actions p LEFT JOIN events e"
        " ON e.event_nid = p.event_nid WHERE e.event_nid IS NULL"
        " OR e.stream_ordering IS NULL OR e.stream_ordering <> p.stream_ordering"
    ),
    "shared push rows of missing events or at another position": (
        "SELECT COUNT(*) FROM event_push_shared p LEFT JOIN events e"
        " ON e.event_nid = p.event_nid WHERE e.event_nid IS NULL"
        " OR e.stream_ordering IS NULL OR e.stream_ordering <> p.stream_ordering"
    ),
    # Spans are opened and closed in stream order: a member has at most one open span
    # per room, and every closed one ends after it starts.
    "push member spans open twice or ending before they start": (
        "SELECT (SELECT COUNT(*) FROM push_member_spans WHERE end_so <= start_so)"
        " + (SELECT COUNT(*) FROM (SELECT user_id, room_nid FROM push_member_spans"
        " WHERE end_so IS NULL GROUP BY user_id, room_nid HAVING COUNT(*) > 1) AS d)"
    ),
    # Client transaction ids map to stored events.
    "transaction ids of missing events": (
        "SELECT COUNT(*) FROM event_txn_ids t LEFT JOIN events e ON e.event_id = t.event_id"
        " WHERE e.event_id IS NULL"
    ),
}


async def violations(db: Database) -> dict[str, int]:
    """Every invariant with a non-zero count of violating rows."""
    out: dict[str, int] = {}
    for name, sql in CHECKS.items():
        count = int(await db.fetchval(sql))
        if count:
            out[name] = count
    # Outbox: every queued PDU is a stored event (the outbox row commits with it).
    missing = 0
    for row in await db.fetchall("SELECT body_json FROM federation_outbox WHERE kind = 'pdu'"):
        pdu = json.loads(row["body_json"])
        event_id = pdu.get("event_id") if isinstance(pdu, dict) else None
        if (
            event_id is None
            or await db.fetchval("SELECT COUNT(*) FROM events WHERE event_id = $1", event_id) != 1
        ):
            missing += 1
    if missing:
        out["outbox PDUs that are not stored events"] = missing
    return out


def missing_push_actions_sql() -> str:
    """Visible messages of others in a room (``$1`` room id) with no row for ``$2``: none
    of their own, and no shared row (migration 0395) covering them (a span of theirs
    holding its position)."""
    return (
        "SELECT COUNT(*) FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
        " WHERE r.room_id = $1 AND e.event_type = 'm.room.message'"
        " AND e.stream_ordering IS NOT NULL AND e.sender <> $2 AND NOT EXISTS"
        " (SELECT 1 FROM event_push_actions p WHERE p.event_nid = e.event_nid"
        " AND p.user_id = $2) AND NOT EXISTS"
        " (SELECT 1 FROM event_push_shared s JOIN push_member_spans m"
        " ON m.room_nid = s.room_nid AND m.user_id = $2 AND m.start_so <= s.stream_ordering"
        " AND (m.end_so IS NULL OR m.end_so > s.stream_ordering)"
        " WHERE s.event_nid = e.event_nid)"
    )


def sqlite_integrity(path: str) -> tuple[str, list[tuple[object, ...]]]:
    """``PRAGMA integrity_check`` ('ok') and the rows of ``PRAGMA foreign_key_check``."""
    conn = sqlite3.connect(path)
    try:
        result = "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check"))
        fks = [tuple(r) for r in conn.execute("PRAGMA foreign_key_check")]
    finally:
        conn.close()
    return result, fks
