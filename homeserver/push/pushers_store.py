"""Table ``pushers`` (migrations 0154, 0270): the HTTP pushers users registered, each
with the cursor of the last notification row delivered to it (see delivery.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
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


class PusherStore:
    def __init__(self, db: Database) -> None:
        self.db = db

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
