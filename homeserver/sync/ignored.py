"""The user's ignored users for /sync (spec: "Ignoring Users"), read once per account
data change rather than once per sync.

Design note
-----------
Every sync with new events hides ignored senders, so it needs the user's
``m.ignored_user_list``; reading it was one statement per woken sync. The list
is account data, and every account-data write moves the account-data stream
(in the database, so in every process). A list read after the stream's head
was seen at P (all writes up to P visible) is still the list while the head
stays at P: nothing was written since, by any process. Once the head moves,
whoever's data it was, the next sync reads again. The cache holds one entry
per user who syncs, bounded.
"""

from __future__ import annotations

from homeserver.errors import MatrixError
from homeserver.userdata.account_data import AccountDataService

IGNORED_USERS = "m.ignored_user_list"
MAX_CACHED_USERS = 10_000


class IgnoredUsers:
    def __init__(self, account_data: AccountDataService) -> None:
        self._account_data = account_data
        # user id -> (account-data position the list is known current at, the list)
        self._cache: dict[str, tuple[int, frozenset[str]]] = {}

    async def get(self, user_nid: int, user_id: str, now: int) -> frozenset[str]:
        """The ignored users of ``user_id`` when the account-data stream is at ``now``."""
        cached = self._cache.get(user_id)
        if cached is not None and cached[0] == now:
            return cached[1]
        ignored = await self._read(user_nid, user_id)
        if len(self._cache) >= MAX_CACHED_USERS:
            self._cache.clear()
        self._cache[user_id] = (now, ignored)
        return ignored

    async def _read(self, user_nid: int, user_id: str) -> frozenset[str]:
        try:
            content = await self._account_data.get(user_nid, user_id, None, IGNORED_USERS)
        except MatrixError:
            return frozenset()
        ignored = content.get("ignored_users")
        if not isinstance(ignored, dict):
            return frozenset()
        return frozenset(u for u in ignored if isinstance(u, str) and u != user_id)
