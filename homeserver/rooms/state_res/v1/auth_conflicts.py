"""The passes over auth-affecting conflicts (``m.room.power_levels``, then
``m.room.join_rules``, then ``m.room.member``): rooms/v1.md "State resolution".

    sort the conflicting events by ascending depth, descending sha1(event_id)
    R[key] = first event
    for each next event: allowed by the auth rules in R? then R[key] = it,
                         else stop
"""

from __future__ import annotations

from collections.abc import Iterable, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import AuthCheck, StateKey
from homeserver.rooms.state_res.v1.auth_state import allowed
from homeserver.rooms.state_res.v1.order import by_lowest_depth_highest_sha1


def resolve_auth_conflict(
    key: StateKey,
    candidates: Iterable[Event],
    resolved: dict[StateKey, str],
    events: dict[str, Event],
    auth_check: AuthCheck,
    rejected: Set[str],
) -> None:
    """Resolve one conflicted key among the auth events, updating ``resolved`` (R)."""
    ordered = by_lowest_depth_highest_sha1(candidates)
    if not ordered:
        return
    resolved[key] = ordered[0].event_id
    for event in ordered[1:]:
        if not allowed(event, resolved, events, auth_check, rejected):
            return
        resolved[key] = event.event_id
