"""State resolution v2 (room versions 2-11) and v2.1 (room version 12); v1 is in ``v1/``.

Spec: "State resolution", section "Algorithm", and its v12 changes.

    state sets --split--> unconflicted map U, conflicted set C
    full conflicted set F = C + auth difference (+ conflicted subgraph in v2.1)
    1. X = power events of F + their auth chains within F, power-sorted
    2. partial = iterative auth checks of X on U (v2) or on {} (v2.1)
    3. F - X sorted by mainline of partial's power levels event
    4. partial = iterative auth checks of those on partial
    5. result = partial updated with U

Pure: every event it reads comes from ``events``, which the caller filled
beforehand. An event it needs and was not given raises ``MissingEvents``
(never ignored: a result over a partial set would diverge from other
servers'); the caller loads or fetches those and calls again. An unconflicted
entry whose event is never read needs no event: step 5 puts it back as every
state set agrees on it. ``auth_edges`` (ids only) lets a caller walk huge auth
chains without loading their events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from homeserver.events.model import Event
from homeserver.events.room_versions import RoomVersion
from homeserver.rooms.state_res.auth_difference import (
    auth_difference,
    auth_difference_from_edges,
)
from homeserver.rooms.state_res.common import (
    POWER_LEVELS_KEY,
    AuthCheck,
    AuthEdges,
    EventEdges,
    StateKey,
    StateMap,
    require,
)
from homeserver.rooms.state_res.conflicted_subgraph import conflicted_subgraph
from homeserver.rooms.state_res.iterative_auth_check import iterative_auth_check
from homeserver.rooms.state_res.mainline_sort import mainline_sort
from homeserver.rooms.state_res.power_sort import power_sort, select_power_events
from homeserver.rooms.state_res.split_conflicted import split_conflicted
from homeserver.rooms.state_res.v1 import resolve_state_v1


def full_conflicted_set(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    conflicted: Mapping[StateKey, Set[str]],
    events: Mapping[str, Event],
    auth_chains: Sequence[Set[str]] | None,
    auth_edges: AuthEdges | None = None,
) -> set[str]:
    """Spec "Full conflicted set"; ``MissingEvents`` unless all of it is in ``events``."""
    edges = EventEdges(events) if auth_edges is None else auth_edges
    conflicted_ids: set[str] = set().union(*conflicted.values())
    require(conflicted_ids, events)
    if auth_chains is None:
        full = conflicted_ids | auth_difference_from_edges(state_sets, edges)
    else:
        full = conflicted_ids | auth_difference(auth_chains)
    if room_version.state_res == 21:
        full |= conflicted_subgraph(conflicted_ids, edges)
    require(full, events)
    return full


def resolve_state(
    room_version: RoomVersion,
    state_sets: Sequence[StateMap],
    events: Mapping[str, Event],
    auth_chains: Sequence[Set[str]] | None,
    auth_check: AuthCheck,
    *,
    rejected_event_ids: Set[str] = frozenset(),
    auth_edges: AuthEdges | None = None,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` into one state map.

    ``auth_chains``, when given, holds the full auth chain of each state set
    in the same order; otherwise they are computed from ``events``.
    ``rejected_event_ids`` names events rejected on receipt: they are never
    used as fallback auth events in the iterative auth checks. ``auth_edges``,
    when given, is the auth graph of the state sets' full auth chains as ids
    (then ``events`` need only hold what the steps read). Raises
    ``MissingEvents`` for any needed event that is not given.
    """
    if auth_chains is not None and len(auth_chains) != len(state_sets):
        raise ValueError("auth_chains must hold one chain per state set")
    if room_version.state_res == 1:  # room version 1
        return resolve_state_v1(state_sets, events, auth_check, rejected_event_ids)
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    unconflicted, conflicted = split_conflicted(state_sets)
    if not conflicted:
        return unconflicted

    full = full_conflicted_set(
        room_version, state_sets, conflicted, events, auth_chains, auth_edges
    )

    # Steps 1 and 2.
    power_ids = select_power_events(full, events)
    initial: StateMap = {} if room_version.state_res == 21 else unconflicted
    partial = iterative_auth_check(
        power_sort(power_ids, events), initial, events, auth_check, rejected_event_ids
    )

    # Steps 3 and 4.
    others = mainline_sort(full - power_ids, partial.get(POWER_LEVELS_KEY), events)
    partial = iterative_auth_check(others, partial, events, auth_check, rejected_event_ids)

    # Step 5.
    partial.update(unconflicted)
    return partial
