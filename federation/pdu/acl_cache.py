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
*after* it (or the rollback). The generation counters, the bus (topic
``SERVER_ACL_CACHE``, keys are room nids) and the bound are
``homeserver.rooms.room_cache``'s.
"""

from __future__ import annotations

from typing import Any, Final

from homeserver.rooms.room_cache import DEFAULT_MAX_ROOMS, RoomCache

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are room nids.
SERVER_ACL_CACHE: Final = "server_acl"
SERVER_ACL: Final = "m.room.server_acl"

Acl = dict[str, Any] | None


class ServerAclCache(RoomCache[Acl]):
    """Room nid -> the ACL's content (None: the room has no ACL)."""

    def __init__(self, max_rooms: int = DEFAULT_MAX_ROOMS) -> None:
        super().__init__(SERVER_ACL_CACHE, max_rooms)


def may_change_acl(event_type: str, state_key: str | None, other_state_changes: bool) -> bool:
    """Whether persisting an event may change its room's current ACL: it is one, or the
    current state changes beyond the event's own entry."""
    return other_state_changes or (event_type == SERVER_ACL and state_key == "")
