"""State resolution over stored events: load what ``resolve_state`` reads (the
events of every state set and their auth chains), then run the pure algorithm.

Spec: "Room State Resolution" and the room versions' algorithms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from federation.pdu.graph import IdMap, RoomGraph
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth import check_auth
from homeserver.rooms.state_res.resolve import resolve_state


async def resolve(
    graph: RoomGraph,
    version: RoomVersion,
    state_sets: Sequence[IdMap],
    extra: Mapping[str, Event] | None = None,
) -> IdMap:
    """The resolved state of several state sets (the state before an event with
    several prev events, or the current state of a forked room). ``extra``
    holds events of the sets that are not stored yet (the event being
    persisted)."""
    unique = [dict(s) for s in {tuple(sorted(s.items())): s for s in state_sets}.values()]
    if len(unique) == 1:
        return unique[0]
    extra = extra or {}
    ids = {e for s in unique for e in s.values()}
    events = await graph.events_of(ids - extra.keys())
    events.update(extra)
    extra_auth = {a for e in extra.values() for a in e.auth_event_ids}
    events.update(await graph.events_of(extra_auth - events.keys()))
    chain = await graph.auth_chain(ids | extra_auth)
    events.update({i: s.event for i, s in chain.items()})
    rejected = {i for i, s in chain.items() if s.rejected_reason is not None}
    return resolve_state(version, unique, events, None, check_auth, rejected_event_ids=rejected)
