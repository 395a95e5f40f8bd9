"""The last pass: conflicts that do not affect authorisation (rooms/v1.md
"State resolution": "pick the event with the highest depth and lowest
sha1(event_id) that passes authentication in R").

When none passes, the spec names no winner; like the reference
implementation (Synapse), the last candidate tried (the lowest depth) wins,
so the key does not vanish from the room state.
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import AuthCheck, StateKey
from homeserver.rooms.state_res.v1.auth_state import allowed
from homeserver.rooms.state_res.v1.order import by_highest_depth_lowest_sha1


def resolve_other_conflict(
    key: StateKey,
    candidates: Iterable[Event],
    resolved: dict[StateKey, str],
    events: dict[str, Event],
    auth_check: AuthCheck,
    rejected: Set[str],
) -> None:
    """Resolve one conflicted key that the auth rules do not read."""
    ordered = by_highest_depth_lowest_sha1(candidates)
    if not ordered:
        return
    for event in ordered:
        if allowed(event, resolved, events, auth_check, rejected):
            resolved[key] = event.event_id
            return
    resolved[key] = ordered[-1].event_id
