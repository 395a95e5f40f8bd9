"""Table ``pushers`` (migrations 0154, 0270): the HTTP pushers users registered, each
with the cursor of the last notification row delivered to it (see delivery.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.sql import placeholders

_COLUMNS = (
    "user_id, device_id, kind, app_id, pushkey, app_display_name, device_display_name,"
    " profile_tag, lang, data_json, created_ts, last_stream_ordering"
)
_KEY = "user_id = $1 AND app_id = $2 AND pushkey = $3"

# (user_id, app_id, pushkey): what names one pusher.
PusherKey = tuple[str, str, str]
_CHUNK = 500


@dataclass(frozen=True, slots=True)
class Pusher:
    user_id: str
    device_id: str
    kind: str
    app_id: str
    pushkey: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: dict[str, Any]
    created_ts: int
    last_stream_ordering: int = 0

    @property
    def key(self) -> PusherKey:
        return (self.user_id, self.app_id, self.pushkey)

    def to_json(self) -> dict[str, Any]:
        """The spec's ``Pusher`` object of GET /pushers."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "app_id": self.app_id,
            "pushkey": self.pushkey,
            "app_display_name": self.app_display_name,
            "device_display_name": self.device_display_name,
            "lang": self.lang,
            "data": self.data,
        }
        if self.profile_tag is not None:
            out["profile_tag"] = self.profile_tag
        return out


def _row(r: Any) -> Pusher:
    return Pusher(
        str(r["user_id"]),
        str(r["device_id"]),
        str(r["kind"]),
        str(r["app_id"]),
        str(r["pushkey"]),
        str(r["app_display_name"]),
        str(r["device_display_name"]),
        r["profile_tag"],
        str(r["lang"]),
        json.loads(r["data_json"]),
        int(r["created_ts"]),
        int(r["last_stream_ordering"]),
    )


# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are the
# user ids whose pushers were added (None: read them all again).
PUSHERS_CACHE = "pushers"


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # Users that have a pusher (a superset: removals leave them in), so that an event
        # notifying a big room asks the database only about those (``users``); None: not
        # read yet. The counter keeps a read racing with an addition from storing it.
        self._users: set[str] | None = None
        self._generation = 0
        # Other processes hear of added pushers through this (None: one process).
        self.publish: Callable[[str, list[str]], None] | None = None

    async def users(self) -> Set[str]:
        """Every user that has a pusher, or had one since this was read."""
        if self._users is not None:
            return self._users
        generation = self._generation
        rows = await self.db.fetchall("SELECT DISTINCT user_id FROM pushers")
        found = {str(r[0]) for r in rows}
        if generation == self._generation:
            self._users = found
        return found

    def known_users(self) -> Set[str] | None:
        """``users`` if read already (for callers that cannot wait), else None."""
        return self._users

    def added(self, user_ids: list[str] | None) -> None:
        """These users got a pusher (here or, from the bus, in another process; None:
        anyone may have)."""
        self._generation += 1
        if user_ids is None:
            self._users = None
        elif self._users is not None:
            self._users.update(user_ids)

    async def for_user(self, user_id: str) -> list[Pusher]:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id",
            user_id,
        )
        return [_row(r) for r in rows]

    async def keys_for_users(self, user_ids: Sequence[str]) -> list[PusherKey]:
        """The pushers of any of these users: one statement per 500 users (an event in a
        big room notifies many members at once, most of them without a pusher)."""
        out: list[PusherKey] = []
        users = list(dict.fromkeys(user_ids))
        for start in range(0, len(users), _CHUNK):
            chunk = users[start : start + _CHUNK]
            rows = await self.db.fetchall(
                "SELECT user_id, app_id, pushkey FROM pushers"
                f" WHERE user_id IN ({placeholders(len(chunk))})",
                *chunk,
            )
            out.extend((str(r["user_id"]), str(r["app_id"]), str(r["pushkey"])) for r in rows)
        return out

    async def get(self, key: PusherKey) -> Pusher | None:
        row = await self.db.fetchone(f"SELECT {_COLUMNS} FROM pushers WHERE {_KEY}", *key)
        return None if row is None else _row(row)

    async def all_keys(self) -> list[PusherKey]:
        rows = await self.db.fetchall("SELECT user_id, app_id, pushkey FROM pushers")
        return [(str(r["user_id"]), str(r["app_id"]), str(r["pushkey"])) for r in rows]

    async def advance(self, key: PusherKey, stream_ordering: int) -> bool:
        """Move the pusher's cursor to ``stream_ordering``; False if the pusher is gone."""
        found = await self.db.fetchval(
            f"UPDATE pushers SET last_stream_ordering = $4 WHERE {_KEY} RETURNING app_id",
            *key,
            stream_ordering,
        )
        return found is not None

    async def put(self, p: Pusher, replace_others: bool) -> None:
        """Add or update ``p``; with ``replace_others``, other users' pushers of the same
        app and pushkey go (spec: ``append`` false). An updated pusher keeps its cursor;
        a new one starts at ``p.last_stream_ordering`` (the stream's position now)."""
        async with self.db.transaction() as txn:
            kept = await txn.fetchval(
                f"SELECT last_stream_ordering FROM pushers WHERE {_KEY}",
                p.user_id,
                p.app_id,
                p.pushkey,
            )
            if replace_others:
                await txn.execute(
                    "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3",
                    p.app_id,
                    p.pushkey,
                    p.user_id,
                )
            await txn.execute(
                "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id = $3",
                p.app_id,
                p.pushkey,
                p.user_id,
            )
            await txn.execute(
                f"INSERT INTO pushers ({_COLUMNS})"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
                p.user_id,
                p.device_id,
                p.kind,
                p.app_id,
                p.pushkey,
                p.app_display_name,
                p.device_display_name,
                p.profile_tag,
                p.lang,
                json.dumps(p.data),
                p.created_ts,
                p.last_stream_ordering if kept is None else int(kept),
            )
        self.added([p.user_id])
        if self.publish is not None:
            self.publish(PUSHERS_CACHE, [p.user_id])

    async def delete(self, user_id: str, app_id: str, pushkey: str) -> None:
        await self.db.execute(
            "DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id = $3",
            app_id,
            pushkey,
            user_id,
        )

    async def delete_for_devices(self, user_id: str, device_ids: list[str]) -> None:
        for device_id in device_ids:
            await self.db.execute(
                "DELETE FROM pushers WHERE user_id = $1 AND device_id = $2", user_id, device_id
            )

    async def delete_user(self, user_id: str) -> None:
        await self.db.execute("DELETE FROM pushers WHERE user_id = $1", user_id)
