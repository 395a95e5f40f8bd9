"""State resolution v1 for room version 1 (spec: rooms/v1.md "State resolution").

    R = union of the state sets without the conflicting events (split)
    1. conflicted m.room.power_levels     -> auth pass (auth_conflicts)
    2. conflicted m.room.join_rules       -> auth pass
    3. each conflicted m.room.member key  -> auth pass
    4. every other conflicted key         -> highest depth, lowest sha1
                                             that passes in R (other_conflicts)

Known to reset state (the spec's own warning); kept only so version 1 rooms
resolve exactly as every other server resolves them. Pure: every event it
reads comes from ``events``; a conflicting event (or a state entry the auth
rules read) missing there raises ``MissingEvents``, never a guess.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import (
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS_KEY,
    AuthCheck,
    StateKey,
    StateMap,
    require,
)
from homeserver.rooms.state_res.v1.auth_conflicts import resolve_auth_conflict
from homeserver.rooms.state_res.v1.other_conflicts import resolve_other_conflict
from homeserver.rooms.state_res.v1.split import split_v1


def resolve_state_v1(
    state_sets: Sequence[StateMap],
    events: Mapping[str, Event],
    auth_check: AuthCheck,
    rejected_event_ids: Set[str] = frozenset(),
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` into one state map with the v1 algorithm."""
    if not state_sets:
        return {}
    unconflicted, conflicted = split_v1(state_sets)
    if not conflicted:
        return unconflicted
    known = dict(events)
    require(sorted({i for ids in conflicted.values() for i in ids}), known)
    resolved: dict[StateKey, str] = dict(unconflicted)

    def candidates(key: StateKey) -> list[Event]:
        return [known[i] for i in sorted(conflicted[key])]

    auth_keys = [k for k in (POWER_LEVELS_KEY,) if k in conflicted]
    auth_keys += sorted(k for k in conflicted if k[0] == JOIN_RULES)
    auth_keys += sorted(k for k in conflicted if k[0] == MEMBER)
    for key in auth_keys:
        resolve_auth_conflict(key, candidates(key), resolved, known, auth_check, rejected_event_ids)
    done = set(auth_keys)
    for key in sorted(k for k in conflicted if k not in done):
        resolve_other_conflict(
            key, candidates(key), resolved, known, auth_check, rejected_event_ids
        )
    return resolved
