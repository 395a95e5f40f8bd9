"""Set-based reads for sliding sync: one query for many rooms at a time.

A room list sorts and filters every room of a user, so nothing here reads
room by room: the newest event per room, the bump stamp per room, a few
current state events per room, member counts per room, the children of
spaces. IN lists are bound value by value, in chunks.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders

# Event types that move a room up the list (as Synapse's DEFAULT_BUMP_EVENT_TYPES).
BUMP_TYPES = (
    "m.room.create",
    "m.room.message",
    "m.room.encrypted",
    "m.sticker",
    "m.call.invite",
    "m.poll.start",
    "m.beacon_info",
)
_CHUNK = 500


def _chunks(values: Sequence[int]) -> list[Sequence[int]]:
    return [values[i : i + _CHUNK] for i in range(0, len(values), _CHUNK)]


class SlidingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _max_ordering(
        self, room_nids: Sequence[int], upto: int, types: Sequence[str]
    ) -> dict[int, int]:
        out: dict[int, int] = {}
        for chunk in _chunks(list(room_nids)):
            sql = (
                "SELECT room_nid, MAX(stream_ordering) AS pos FROM events"
                f" WHERE room_nid IN ({placeholders(len(chunk), 2)}) AND stream_ordering <= $1"
            )
            args: list[Any] = [upto, *chunk]
            if types:
                first = len(args) + 1
                sql += f" AND event_type IN ({placeholders(len(types), first)})"
                args.extend(types)
            rows = await self.db.fetchall(sql + " GROUP BY room_nid", *args)
            out.update({int(r["room_nid"]): int(r["pos"]) for r in rows if r["pos"] is not None})
        return out

    async def latest_positions(self, room_nids: Sequence[int], upto: int) -> dict[int, int]:
        """room nid -> stream position of its newest visible event (at most ``upto``)."""
        return await self._max_ordering(room_nids, upto, ())

    async def bump_stamps(self, room_nids: Sequence[int], upto: int) -> dict[int, int]:
        """room nid -> stream position of its newest event of a bump type."""
        return await self._max_ordering(room_nids, upto, BUMP_TYPES)

    async def state_contents(
        self, room_nids: Sequence[int], keys: Sequence[tuple[str, str]]
    ) -> dict[int, dict[tuple[str, str], dict[str, Any]]]:
        """room nid -> (type, state_key) -> content, for the listed keys of current state."""
        out: dict[int, dict[tuple[str, str], dict[str, Any]]] = {}
        types = sorted({t for t, _ in keys})
        wanted = set(keys)
        for chunk in _chunks(list(room_nids)):
            rows = await self.db.fetchall(
                "SELECT c.room_nid, k.event_type, k.state_key, e.json FROM current_state c"
                " JOIN state_keys k ON k.state_key_nid = c.state_key_nid"
                " JOIN events e ON e.event_nid = c.event_nid"
                f" WHERE c.room_nid IN ({placeholders(len(chunk))})"
                f" AND k.event_type IN ({placeholders(len(types), len(chunk) + 1)})",
                *chunk,
                *types,
            )
            for r in rows:
                key = (str(r["event_type"]), str(r["state_key"]))
                if key not in wanted:
                    continue
                content = json.loads(r["json"]).get("content")
                if isinstance(content, dict):
                    out.setdefault(int(r["room_nid"]), {})[key] = content
        return out

    async def space_children(self, space_nids: Sequence[int]) -> set[str]:
        """Room ids named by a current ``m.space.child`` with a non-empty ``via``."""
        out: set[str] = set()
        for chunk in _chunks(list(space_nids)):
            rows = await self.db.fetchall(
                "SELECT k.state_key, e.json FROM current_state c"
                " JOIN state_keys k ON k.state_key_nid = c.state_key_nid"
                " JOIN events e ON e.event_nid = c.event_nid"
                f" WHERE c.room_nid IN ({placeholders(len(chunk))})"
                " AND k.event_type = 'm.space.child'",
                *chunk,
            )
            for r in rows:
                via = json.loads(r["json"]).get("content", {}).get("via")
                if isinstance(via, list) and via:
                    out.add(str(r["state_key"]))
        return out

    async def member_counts(self, room_nids: Sequence[int]) -> dict[int, dict[str, int]]:
        """room nid -> membership -> count."""
        out: dict[int, dict[str, int]] = {}
        for chunk in _chunks(list(room_nids)):
            rows = await self.db.fetchall(
                "SELECT room_nid, membership, COUNT(*) AS n FROM room_memberships"
                f" WHERE room_nid IN ({placeholders(len(chunk))}) GROUP BY room_nid, membership",
                *chunk,
            )
            for r in rows:
                out.setdefault(int(r["room_nid"]), {})[str(r["membership"])] = int(r["n"])
        return out
