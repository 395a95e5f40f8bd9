"""Auth chains: the events reachable through ``auth_events`` links.

Spec: "Auth chain". A link to an event missing from ``events`` raises
``MissingEvents``: an auth chain with a hole is not the room's auth chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import AuthEdges, EventEdges, cited, require


def auth_chain(event_ids: Iterable[str], events: Mapping[str, Event]) -> set[str]:
    """The union of the auth chains of ``event_ids`` (the events themselves excluded
    unless one cites another)."""
    return auth_chain_of_edges(event_ids, EventEdges(events))


def auth_chain_of_edges(event_ids: Iterable[str], edges: AuthEdges) -> set[str]:
    """``auth_chain`` over ids only."""
    stack = list(event_ids)
    require(stack, edges)
    chain: set[str] = set()
    while stack:
        for auth_id in cited(stack.pop(), edges):
            if auth_id not in chain:
                chain.add(auth_id)
                stack.append(auth_id)
    return chain


def full_auth_chains(
    state_sets: Iterable[Mapping[tuple[str, str], str]], events: Mapping[str, Event]
) -> list[set[str]]:
    """Spec: the "full auth chain" of each state set (union over its events)."""
    return [auth_chain(state_set.values(), events) for state_set in state_sets]
