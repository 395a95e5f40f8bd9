"""Partial-state joins in tests: the option, and holding the joining server's resync.

A test that looks at a room while it is partial replaces ``PartialStateJoins.start``
on the joining server's instance, so the background resync does not begin until the
test lets it (``release_resync``). Shared by the Myelin-to-Myelin tests
(tests/federation/test_partial_state_join.py) and the Synapse interop ones
(tests/interop/test_synapse_partial_join.py).
"""

from __future__ import annotations

from federation.membership.partial_state import PartialStateJoins
from homeserver.app import RunningServer
from homeserver.rooms.store.rooms_store import RoomInfo

# Partial-state joins are on by default (config federation.partial_state_joins); the
# tests say so, not to depend on the default.
PARTIAL_ON = {"partial_state_joins": True}


def partial_joins(server: RunningServer) -> PartialStateJoins:
    fed = server.hs.federation
    assert fed is not None and fed.rooms is not None
    return fed.rooms.partial


def hold_resync(server: RunningServer) -> list[RoomInfo]:
    """Keep the server's resyncs from starting; the rooms it was asked for."""
    held: list[RoomInfo] = []
    partial_joins(server).start = held.append  # type: ignore[method-assign,assignment]
    return held


def release_resync(server: RunningServer, held: list[RoomInfo]) -> None:
    """Start the resyncs held back by ``hold_resync``, and any later one at once."""
    partial = partial_joins(server)
    del partial.start  # the class's own method again
    for room in held:
        partial.start(room)


async def room_info(server: RunningServer, room_id: str) -> RoomInfo:
    room = await partial_joins(server).rooms.rooms.get_room(room_id)
    assert room is not None
    return room
