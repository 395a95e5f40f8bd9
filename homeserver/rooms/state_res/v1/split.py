"""The first pass of state resolution v1: R and the conflicts.

Spec rooms/v1.md: "A conflict occurs between states where those states have
different event_ids for the same (event_type, state_key)". Unlike v2, a key
that some sets lack but the others agree on is not a conflict: it is part of
R from the start.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.rooms.state_res.common import StateKey, StateMap


def split_v1(
    state_sets: Sequence[StateMap],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Return ``(R without conflicting events, conflicting event ids per key)``."""
    seen: dict[StateKey, set[str]] = {}
    for state_set in state_sets:
        for key, event_id in state_set.items():
            seen.setdefault(key, set()).add(event_id)
    unconflicted = {k: next(iter(ids)) for k, ids in seen.items() if len(ids) == 1}
    conflicted = {k: ids for k, ids in seen.items() if len(ids) > 1}
    return unconflicted, conflicted
