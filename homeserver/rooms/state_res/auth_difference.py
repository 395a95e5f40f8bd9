"""Auth difference: events in some but not all of the full auth chains.

Spec: "Auth difference". With ``C_i`` the full auth chain of state set
``S_i``, the auth difference is ``union(C_i) - intersection(C_i)``.

``auth_difference`` takes the chains (a store with an auth chain index
computes them cheaply). ``auth_difference_from_events`` walks the auth graph
once for all state sets instead of once per set: each event carries a bit
mask of the state sets whose full auth chain holds it, pushed from citing
events to cited ones in topological order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import AuthEdges, EventEdges, StateMap, cited, require


def auth_difference(auth_chains: Sequence[Set[str]]) -> set[str]:
    """``union(C_i) - intersection(C_i)`` over the full auth chains given."""
    if not auth_chains:
        return set()
    union: set[str] = set().union(*auth_chains)
    by_size = sorted(auth_chains, key=len)
    common = set(by_size[0])
    for chain in by_size[1:]:
        common.intersection_update(chain)
        if not common:
            break
    return union - common


def auth_difference_from_events(
    state_sets: Sequence[StateMap], events: Mapping[str, Event]
) -> set[str]:
    """The auth difference, computing the full auth chains from ``events``."""
    return auth_difference_from_edges(state_sets, EventEdges(events))


def auth_difference_from_edges(state_sets: Sequence[StateMap], edges: AuthEdges) -> set[str]:
    """The auth difference over ids only (``MissingEvents`` for a hole in a chain)."""
    seeds: dict[str, int] = {}
    for index, state_set in enumerate(state_sets):
        bit = 1 << index
        require(state_set.values(), edges)
        for event_id in state_set.values():
            seeds[event_id] = seeds.get(event_id, 0) | bit
    masks: dict[str, int] = {}
    for event_id in _citing_before_cited(seeds, edges):
        carried = seeds.get(event_id, 0) | masks.get(event_id, 0)
        if not carried:
            continue
        for auth_id in edges[event_id]:
            masks[auth_id] = masks.get(auth_id, 0) | carried
    everyone = (1 << len(state_sets)) - 1
    return {event_id for event_id, mask in masks.items() if mask != everyone}


def _citing_before_cited(roots: Mapping[str, int], edges: AuthEdges) -> list[str]:
    """Events reachable from ``roots``, each before every event it cites.

    Reverse post-order of an iterative depth-first walk over ``auth_events``.
    """
    visited: set[str] = set()
    post_order: list[str] = []
    for root in roots:
        if root in visited:
            continue
        visited.add(root)
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(cited(root, edges)))]
        while stack:
            node, children = stack[-1]
            for child in children:
                if child not in visited:
                    visited.add(child)
                    stack.append((child, iter(cited(child, edges))))
                    break
            else:
                stack.pop()
                post_order.append(node)
    post_order.reverse()
    return post_order
