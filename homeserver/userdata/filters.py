"""Filters uploaded with ``POST /user/{userId}/filter`` (table ``user_filters``).

A filter is checked against the spec's schema (``userdata.filtering.parse_filter``)
before it is stored, stored as sent, and never changed. ``load`` is what
/sync and /messages call with their ``filter`` parameter: an id or inline JSON.

Every /sync names its filter again, so ``load`` keeps the parsed filters it
answered with: a stored filter is never changed or deleted and its id never
reused (AUTOINCREMENT / identity), so one read per (user, id) is right in every
process without any invalidation; inline JSON parses to the same filter every
time. Both caches are bounded; errors are not kept.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.storage.database import Database
from homeserver.userdata.filtering import DEFAULT_FILTER, Filter, parse_filter

_MAX_FILTER_ID = 2**62
# Parsed filters kept per process (by user and id, and by inline text).
MAX_CACHED_FILTERS = 10_000


class FilterStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_nid: int, filter_json: str) -> int:
        nid = await self.db.fetchval(
            "INSERT INTO user_filters (user_nid, filter_json) VALUES ($1, $2) RETURNING filter_nid",
            user_nid,
            filter_json,
        )
        return int(nid)

    async def get(self, user_nid: int, filter_nid: int) -> str | None:
        raw = await self.db.fetchval(
            "SELECT filter_json FROM user_filters WHERE filter_nid = $1 AND user_nid = $2",
            filter_nid,
            user_nid,
        )
        return None if raw is None else str(raw)


class FilterService:
    def __init__(self, store: FilterStore) -> None:
        self.store = store
        self._by_id: dict[tuple[int, str], Filter] = {}
        self._inline: dict[str, Filter] = {}

    async def create(self, user_nid: int, raw: dict[str, Any]) -> str:
        """Check ``raw`` (400 on a schema error) and store it; the new filter id."""
        parse_filter(raw)
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
        return str(await self.store.add(user_nid, text))

    async def get_json(self, user_nid: int, filter_id: str) -> dict[str, Any]:
        """The stored filter as uploaded; 404 ``M_NOT_FOUND`` if not this user's."""
        if not filter_id.isdigit() or int(filter_id) >= _MAX_FILTER_ID:
            raise not_found("No such filter")
        raw = await self.store.get(user_nid, int(filter_id))
        if raw is None:
            raise not_found("No such filter")
        return dict(json.loads(raw))

    async def load(self, user_nid: int, filter_param: str | None) -> Filter:
        """The parsed filter for a ``filter`` query parameter: inline JSON or an id.

        Bad inline JSON or an unknown id is 400 ``M_INVALID_PARAM`` (the
        parameter, not a body, is wrong).
        """
        if not filter_param:
            return DEFAULT_FILTER
        if filter_param.startswith("{"):
            found = self._inline.get(filter_param)
            if found is None:
                try:
                    found = parse_filter(json.loads(filter_param))
                except ValueError:
                    raise invalid_param("Invalid filter: not JSON") from None
                except MatrixError as e:
                    raise invalid_param(f"Invalid filter: {e.error}") from None
                _keep(self._inline, filter_param, found)
            return found
        key = (user_nid, filter_param)
        found = self._by_id.get(key)
        if found is None:
            try:
                found = parse_filter(await self.get_json(user_nid, filter_param))
            except MatrixError:
                raise invalid_param("Unknown filter id") from None
            _keep(self._by_id, key, found)
        return found


def _keep(cache: dict[Any, Filter], key: Any, value: Filter) -> None:
    if len(cache) >= MAX_CACHED_FILTERS:
        cache.clear()
    cache[key] = value
