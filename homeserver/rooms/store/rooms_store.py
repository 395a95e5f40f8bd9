"""Tables ``rooms``, ``state_keys`` and ``room_aliases``.

Rooms and interned state keys never change once written (except the
directory flag), so both are cached in memory after the first read. A
purged room leaves the cache here and, through ``publish`` (the signal bus,
``ROOMS_CACHE``), in every other process.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.storage.database import Database, Queries, Row
from homeserver.storage.sql import placeholders

StateKey = tuple[str, str]
# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room ids.
ROOMS_CACHE = "rooms"

# The content key of each state type the user directory keeps on the room row.
_FLAG_KEYS = {"m.room.join_rules": "join_rule", "m.room.history_visibility": "history_visibility"}


def _content_str(pdu_json: str, key: str) -> str | None:
    """``content[key]`` of a stored PDU when it is a string."""
    try:
        content = json.loads(pdu_json).get("content")
    except ValueError:
        return None
    value = content.get(key) if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class RoomInfo:
    room_nid: int
    room_id: str
    version: RoomVersion
    creator: str


class RoomStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._rooms: dict[str, RoomInfo] = {}
        self._by_nid: dict[int, RoomInfo] = {}
        self._key_nids: dict[StateKey, int] = {}
        self._keys: dict[int, StateKey] = {}
        self.publish: Callable[[str, list[str]], None] | None = None

    # ------------------------------------------------------------- rooms

    async def insert_room(
        self, q: Queries, room_id: str, version: RoomVersion, creator: str, ts: int
    ) -> int:
        nid = await q.fetchval(
            "INSERT INTO rooms (room_id, room_version, creator, created_ts)"
            " VALUES ($1, $2, $3, $4) RETURNING room_nid",
            room_id,
            version.identifier,
            creator,
            ts,
        )
        return int(nid)

    def _remember(self, r: Row) -> RoomInfo:
        info = RoomInfo(
            int(r["room_nid"]),
            str(r["room_id"]),
            KNOWN_ROOM_VERSIONS[str(r["room_version"])],
            str(r["creator"]),
        )
        self._rooms[info.room_id] = info
        self._by_nid[info.room_nid] = info
        return info

    def forget_room(self, room: RoomInfo) -> None:
        """The room was purged: drop it from the cache, here and in other processes."""
        self.drop_cached([room.room_id])
        if self.publish is not None:
            self.publish(ROOMS_CACHE, [room.room_id])

    def drop_cached(self, room_ids: list[str] | None) -> None:
        """Drop cached rooms in this process only (None: every one)."""
        if room_ids is None:
            self._rooms.clear()
            self._by_nid.clear()
            return
        for room_id in room_ids:
            info = self._rooms.pop(room_id, None)
            if info is not None:
                self._by_nid.pop(info.room_nid, None)

    async def get_room(self, room_id: str) -> RoomInfo | None:
        info = self._rooms.get(room_id)
        if info is not None:
            return info
        row = await self.db.fetchone(
            "SELECT room_nid, room_id, room_version, creator FROM rooms WHERE room_id = $1",
            room_id,
        )
        return None if row is None else self._remember(row)

    async def rooms_by_nid(self, nids: Iterable[int]) -> dict[int, RoomInfo]:
        wanted = set(nids)
        missing = [n for n in wanted if n not in self._by_nid]
        if missing:
            rows = await self.db.fetchall(
                "SELECT room_nid, room_id, room_version, creator FROM rooms"
                f" WHERE room_nid IN ({placeholders(len(missing))})",
                *missing,
            )
            for row in rows:
                self._remember(row)
        return {n: self._by_nid[n] for n in wanted if n in self._by_nid}

    async def refresh_directory_flags(self, q: Queries, room_nids: Iterable[int]) -> None:
        """Copy the current join rule and history visibility onto the room rows (the
        user directory's notion of a public room); run in the transaction that
        changed the current state, or once by the backfill for older rooms."""
        nids = sorted(set(room_nids))
        if not nids:
            return
        rows = await q.fetchall(
            "SELECT c.room_nid, k.event_type, e.json FROM current_state c"
            " JOIN state_keys k ON k.state_key_nid = c.state_key_nid"
            " JOIN events e ON e.event_nid = c.event_nid"
            f" WHERE c.room_nid IN ({placeholders(len(nids))}) AND k.state_key = ''"
            " AND k.event_type IN ('m.room.join_rules', 'm.room.history_visibility')",
            *nids,
        )
        flags: dict[int, dict[str, str | None]] = {
            n: {"m.room.join_rules": None, "m.room.history_visibility": None} for n in nids
        }
        for r in rows:
            flags[int(r[0])][str(r[1])] = _content_str(str(r[2]), _FLAG_KEYS[str(r[1])])
        await q.executemany(
            "UPDATE rooms SET join_rule = $1, history_visibility = $2,"
            " directory_flags_known = 1 WHERE room_nid = $3",
            [(f["m.room.join_rules"], f["m.room.history_visibility"], n) for n, f in flags.items()],
        )

    async def rooms_without_directory_flags(self, limit: int) -> list[int]:
        """Rooms from before migration 0340, whose flags the backfill has not set yet."""
        rows = await self.db.fetchall(
            "SELECT room_nid FROM rooms WHERE directory_flags_known = 0 ORDER BY room_nid LIMIT $1",
            limit,
        )
        return [int(r[0]) for r in rows]

    async def set_public(self, room_nid: int, public: bool) -> None:
        await self.set_public_in(self.db, room_nid, public)

    async def set_public_in(self, q: Queries, room_nid: int, public: bool) -> None:
        await q.execute(
            "UPDATE rooms SET is_public = $1 WHERE room_nid = $2", int(public), room_nid
        )

    async def is_public(self, room_nid: int) -> bool:
        value = await self.db.fetchval("SELECT is_public FROM rooms WHERE room_nid = $1", room_nid)
        return bool(value)

    # -------------------------------------------------------- state keys

    async def intern_state_keys(self, q: Queries, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        """The nid of each key, creating the missing ones inside transaction ``q``: one
        insert for all the missing keys, and a read of their nids per 200 (a big
        room's state brings thousands of new member keys at once)."""
        out: dict[StateKey, int] = {}
        missing: list[StateKey] = []
        for key in set(keys):
            nid = self._key_nids.get(key)
            if nid is None:
                missing.append(key)
            else:
                out[key] = nid
        if not missing:
            return out
        missing.sort()
        await q.executemany(
            "INSERT INTO state_keys (event_type, state_key) VALUES ($1, $2)"
            " ON CONFLICT (event_type, state_key) DO NOTHING",
            missing,
        )
        for start in range(0, len(missing), 200):
            chunk = missing[start : start + 200]
            where = " OR ".join(
                f"(event_type = ${2 * i + 1} AND state_key = ${2 * i + 2})"
                for i in range(len(chunk))
            )
            rows = await q.fetchall(
                f"SELECT state_key_nid, event_type, state_key FROM state_keys WHERE {where}",
                *[part for key in chunk for part in key],
            )
            for r in rows:
                out[(str(r[1]), str(r[2]))] = int(r[0])
        return out

    def remember_keys(self, keys: dict[StateKey, int]) -> None:
        """Cache keys whose transaction has committed."""
        for key, nid in keys.items():
            self._key_nids[key] = nid
            self._keys[nid] = key

    async def key_nids(self, keys: Iterable[StateKey]) -> dict[StateKey, int]:
        """Existing nids of ``keys`` (unknown keys are left out)."""
        wanted = set(keys)
        missing = sorted(k for k in wanted if k not in self._key_nids)
        for start in range(0, len(missing), 200):  # one statement per 200 unknown keys
            chunk = missing[start : start + 200]
            where = " OR ".join(
                f"(event_type = ${2 * i + 1} AND state_key = ${2 * i + 2})"
                for i in range(len(chunk))
            )
            rows = await self.db.fetchall(
                f"SELECT state_key_nid, event_type, state_key FROM state_keys WHERE {where}",
                *(part for key in chunk for part in key),
            )
            for row in rows:
                key = (str(row["event_type"]), str(row["state_key"]))
                self._key_nids[key] = int(row["state_key_nid"])
                self._keys[int(row["state_key_nid"])] = key
        return {k: self._key_nids[k] for k in wanted if k in self._key_nids}

    async def keys_for_nids(self, nids: Iterable[int]) -> dict[int, StateKey]:
        wanted = set(nids)
        missing = [n for n in wanted if n not in self._keys]
        if missing:
            rows = await self.db.fetchall(
                "SELECT state_key_nid, event_type, state_key FROM state_keys"
                f" WHERE state_key_nid IN ({placeholders(len(missing))})",
                *missing,
            )
            for row in rows:
                key = (str(row["event_type"]), str(row["state_key"]))
                self._keys[int(row["state_key_nid"])] = key
                self._key_nids[key] = int(row["state_key_nid"])
        return {n: self._keys[n] for n in wanted if n in self._keys}

    # ------------------------------------------------------------ aliases

    async def create_alias(self, alias: str, room_nid: int, creator: str, ts: int) -> bool:
        """False if the alias is taken."""
        async with self.db.transaction() as q:
            return await self.create_alias_in(q, alias, room_nid, creator, ts)

    async def create_alias_in(
        self, q: Queries, alias: str, room_nid: int, creator: str, ts: int
    ) -> bool:
        """``create_alias`` inside the caller's transaction (createRoom's own). One
        statement, so that two transactions racing for an alias on PostgreSQL end with
        one owner and a False, not a unique violation."""
        claimed = await q.fetchval(
            "INSERT INTO room_aliases (room_alias, room_nid, creator, created_ts)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (room_alias) DO NOTHING RETURNING room_alias",
            alias,
            room_nid,
            creator,
            ts,
        )
        return claimed is not None

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        """(room_id, creator) of a local alias."""
        row = await self.db.fetchone(
            "SELECT r.room_id, a.creator FROM room_aliases a JOIN rooms r"
            " ON r.room_nid = a.room_nid WHERE a.room_alias = $1",
            alias,
        )
        return None if row is None else (str(row["room_id"]), str(row["creator"]))

    async def delete_alias(self, alias: str) -> None:
        await self.db.execute("DELETE FROM room_aliases WHERE room_alias = $1", alias)

    async def move_aliases(self, from_nid: int, to_nid: int) -> None:
        """A room upgrade: every local alias of the old room now names the new one."""
        await self.move_aliases_in(self.db, from_nid, to_nid)

    async def move_aliases_in(self, q: Queries, from_nid: int, to_nid: int) -> None:
        """``move_aliases`` inside transaction ``q`` (the new room's own)."""
        await q.execute(
            "UPDATE room_aliases SET room_nid = $1 WHERE room_nid = $2", to_nid, from_nid
        )

    async def public_rooms(self) -> list[int]:
        """nids of the rooms published in the local room directory."""
        rows = await self.db.fetchall("SELECT room_nid FROM rooms WHERE is_public = 1")
        return [int(r[0]) for r in rows]

    async def set_network_listing(
        self, appservice_id: str, network_id: str, room_nid: int, listed: bool
    ) -> None:
        """Table ``appservice_room_list`` (migration 0201): a service's network directory."""
        if listed:
            await self.db.execute(
                "INSERT INTO appservice_room_list (appservice_id, network_id, room_nid)"
                " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                appservice_id,
                network_id,
                room_nid,
            )
        else:
            await self.db.execute(
                "DELETE FROM appservice_room_list"
                " WHERE appservice_id = $1 AND network_id = $2 AND room_nid = $3",
                appservice_id,
                network_id,
                room_nid,
            )

    async def network_rooms(self, appservice_id: str | None, network_id: str | None) -> list[int]:
        """nids of rooms in one service network's directory (both None: every network's)."""
        if appservice_id is None or network_id is None:
            rows = await self.db.fetchall("SELECT DISTINCT room_nid FROM appservice_room_list")
        else:
            rows = await self.db.fetchall(
                "SELECT room_nid FROM appservice_room_list"
                " WHERE appservice_id = $1 AND network_id = $2",
                appservice_id,
                network_id,
            )
        return [int(r[0]) for r in rows]

    async def aliases_for_room(self, room_nid: int) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT room_alias FROM room_aliases WHERE room_nid = $1 ORDER BY room_alias",
            room_nid,
        )
        return [str(r["room_alias"]) for r in rows]
