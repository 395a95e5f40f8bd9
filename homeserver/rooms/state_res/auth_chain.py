"""Auth chains: the events reachable through ``auth_events`` links.

Spec: "Auth chain". Events missing from ``events`` are skipped: the caller
fetched every event it could, and an event it could not fetch takes no part
in resolution.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.model import Event


def auth_chain(event_ids: Iterable[str], events: Mapping[str, Event]) -> set[str]:
    """The union of the auth chains of ``event_ids`` (the events themselves excluded
    unless one cites another)."""
    chain: set[str] = set()
    stack = [eid for eid in event_ids if eid in events]
    while stack:
        for auth_id in events[stack.pop()].auth_event_ids:
            if auth_id not in chain and auth_id in events:
                chain.add(auth_id)
                stack.append(auth_id)
    return chain


def full_auth_chains(
    state_sets: Iterable[Mapping[tuple[str, str], str]], events: Mapping[str, Event]
) -> list[set[str]]:
    """Spec: the "full auth chain" of each state set (union over its events)."""
    return [auth_chain(state_set.values(), events) for state_set in state_sets]
