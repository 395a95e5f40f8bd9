"""The server ACL of each room (or that it has none), remembered per room.

Every inbound PDU, typing or receipt EDU and room read checks the sending server
against the room's ``m.room.server_acl``. Most rooms have none, and reading "none"
cost a query per PDU (a missing state key is not cached), so the content (or None,
for no ACL) is kept here per room nid.

Design note
-----------
The current state changes only inside the event persister's transaction. Its
``txn_hooks`` call ``on_persisted`` for every event: an ``m.room.server_acl`` state
event, or any event whose plan changes the current state besides its own entry
(state resolution, a join's state), drops the room *before* the commit and again
*after* it (or the rollback). A ``generation`` per room keeps a read that raced
with the write from storing what it read (``get`` notes it before its query).
Other processes over the same PostgreSQL hear of it through ``publish`` (the
signal bus, topic ``SERVER_ACL_CACHE``, keys are room nids); after a bus
reconnect ``drop_cached(None)`` empties the cache. Bounded: least recently used
rooms go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
SERVER_ACL_CACHE: Final = "server_acl"
SERVER_ACL: Final = "m.room.server_acl"
DEFAULT_MAX_ROOMS: Final = 4096

Acl = dict[str, Any] | None


class ServerAclCache:
    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS) -> None:
        self.max_rooms = max_rooms
        # room nid -> (the ACL's content or None for no ACL,)
        self._acls: OrderedDict[int, tuple[Acl]] = OrderedDict()
        self._generation: dict[int, int] = {}
        self._epoch = 0
        # Other processes are told through this (None: one process).
        self.publish: Callable[[str, list[str]], None] | None = None

    async def get(self, room_nid: int, read: Callable[[], Awaitable[Acl]]) -> Acl:
        """The room's ACL content (None: no ACL), from the cache or ``read()``."""
        cached = self._acls.get(room_nid)
        if cached is not None:
            self._acls.move_to_end(room_nid)
            return cached[0]
        generation = self._generation.get(room_nid, 0)
        epoch = self._epoch
        acl = await read()
        if self._generation.get(room_nid, 0) == generation and self._epoch == epoch:
            self._acls[room_nid] = (acl,)
            while len(self._acls) > self.max_rooms:
                self._acls.popitem(last=False)
        return acl

    def drop(self, room_nids: Iterable[int]) -> None:
        """Forget these rooms' ACLs in this process only."""
        for nid in room_nids:
            self._acls.pop(nid, None)
            self._generation[nid] = self._generation.get(nid, 0) + 1
        if len(self._generation) > 4 * self.max_rooms:
            self.drop_cached(None)

    def changed(self, room_nids: Iterable[int]) -> None:
        """These rooms' current state changed (committed or rolled back): forget their
        ACLs here and in every other process."""
        nids = list(room_nids)
        self.drop(nids)
        if self.publish is not None and nids:
            self.publish(SERVER_ACL_CACHE, [str(n) for n in nids])

    def drop_cached(self, keys: list[str] | None) -> None:
        """The bus's handler: these room nids changed elsewhere (None: anything may have)."""
        if keys is None:
            self._acls.clear()
            self._generation.clear()
            self._epoch += 1
            return
        nids = []
        for key in keys:
            try:
                nids.append(int(key))
            except ValueError:
                continue
        self.drop(nids)


def may_change_acl(event_type: str, state_key: str | None, other_state_changes: bool) -> bool:
    """Whether persisting an event may change its room's current ACL: it is one, or the
    current state changes beyond the event's own entry."""
    return other_state_changes or (event_type == SERVER_ACL and state_key == "")
