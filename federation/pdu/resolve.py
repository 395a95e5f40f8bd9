"""State resolution over stored events: walk the auth chains as ids, load only
the events the steps read, then run the pure algorithm.

Spec: "Room State Resolution" and the room versions' algorithms.

Design note
-----------
::

    state sets --auth_graph (ids, batched SQL)--> full auth chains, AuthEdges
      events loaded: the conflicted events, their auth events, and the power
      levels ancestry of each (what the sorts and auth checks read)
      resolve_state(...)  --MissingEvents(ids)--> load those (+ their auth
                                                  events), try again (bounded)

Nothing is guessed: a link of a chain that is not stored, or an event the
steps need that is not stored, ends in ``MissingEvents`` for the caller,
which may fetch them from the sender and try again, or refuse the event.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from federation.pdu.graph import IdMap, RoomGraph
from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.auth import check_auth
from homeserver.rooms.state_res.auth_chain import auth_chain_of_edges
from homeserver.rooms.state_res.common import POWER_LEVELS, MissingEvents
from homeserver.rooms.state_res.resolve import resolve_state
from homeserver.rooms.state_res.split_conflicted import split_conflicted

# Each round loads what the previous one found missing; the power levels
# ancestry is loaded eagerly, so a few rounds suffice in practice.
MAX_ROUNDS = 50
# State resolution v2 and v2.1 name every event they need (MissingEvents), so
# only those are loaded.
LAZY_ALGORITHMS = (2, 21)


async def resolve(
    graph: RoomGraph,
    version: RoomVersion,
    state_sets: Sequence[IdMap],
    extra: Mapping[str, Event] | None = None,
) -> IdMap:
    """The resolved state of several state sets (the state before an event with
    several prev events, or the current state of a forked room). ``extra``
    holds events of the sets that are not stored yet (the event being
    persisted). Raises ``MissingEvents`` when the room's graph has a hole."""
    unique = [dict(s) for s in {tuple(sorted(s.items())): s for s in state_sets}.values()]
    if len(unique) == 1:
        return unique[0]
    _, conflicted = split_conflicted(unique)
    if not conflicted:
        return resolve_state(version, unique, {}, None, check_auth)
    extra = dict(extra or {})
    ids = {e for s in unique for e in s.values()}
    extra_auth = {a for e in extra.values() for a in e.auth_event_ids}
    walked = await graph.auth_graph((ids | extra_auth) - extra.keys())
    edges: dict[str, Sequence[str]] = dict(walked.edges)
    for event in extra.values():
        edges[event.event_id] = event.auth_event_ids
    walked.missing -= extra.keys()
    if walked.missing:
        raise MissingEvents(walked.missing)
    events: dict[str, Event] = dict(extra)
    if version.state_res not in LAZY_ALGORITHMS:
        # Another algorithm (v1) reads what it likes of the sets: give it all of them.
        events.update(await graph.events_of(edges.keys() - events.keys()))
        return resolve_state(
            version, unique, events, None, check_auth, rejected_event_ids=walked.rejected
        )
    chains = [auth_chain_of_edges(s.values(), edges) for s in unique]
    wanted = set().union(*conflicted.values())
    for _ in range(MAX_ROUNDS):
        await _load(graph, wanted, events)
        try:
            return resolve_state(
                version,
                unique,
                events,
                chains,
                check_auth,
                rejected_event_ids=walked.rejected,
                auth_edges=edges,
            )
        except MissingEvents as e:
            wanted = set(e.event_ids)
            if wanted <= events.keys():
                raise
    raise MissingEvents(wanted)


async def _load(graph: RoomGraph, ids: Iterable[str], events: dict[str, Event]) -> None:
    """Load ``ids``, their auth events, and, through power levels events, the
    power levels ancestry (what power ordering and mainline ordering walk)."""
    expand = {i for i in ids if i not in events}
    todo = set(expand)
    for event_id in ids:
        if event_id in events:
            todo.update(a for a in events[event_id].auth_event_ids if a not in events)
            expand.add(event_id)
    while todo:
        found = await graph.events_of(todo)
        gone = todo - found.keys()
        if gone:
            raise MissingEvents(gone)
        events.update(found)
        following: set[str] = set()
        for event_id, event in found.items():
            if event_id in expand or event.type == POWER_LEVELS:
                following.update(a for a in event.auth_event_ids if a not in events)
        todo = following
