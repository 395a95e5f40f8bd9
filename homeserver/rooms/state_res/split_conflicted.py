"""Step 0: split the input state sets into unconflicted and conflicted state.

Spec: "Unconflicted state map and conflicted state set". A key is
unconflicted when every state set holds it with the same event id; every
other (key, event id) pair belongs to the conflicted state set. A key that
is missing from some set is conflicted even if the others agree.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.rooms.state_res.common import StateKey, StateMap


def split_conflicted(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Return ``(unconflicted state map, conflicted event ids per key)``."""
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    if not state_sets:
        return unconflicted, conflicted
    # Only keys of the smallest set can be unconflicted; all others are
    # conflicted by absence. One dict lookup per (set, key) pair.
    smallest = min(state_sets, key=len)
    for key, event_id in smallest.items():
        if all(s.get(key) == event_id for s in state_sets):
            unconflicted[key] = event_id
    for state_set in state_sets:
        for key, event_id in state_set.items():
            if key not in unconflicted:
                conflicted.setdefault(key, set()).add(event_id)
    return unconflicted, conflicted
