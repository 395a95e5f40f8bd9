"""Steps 2 and 4: the iterative auth checks.

Spec: "Iterative auth checks". Starting from an initial state, each event of
a sorted list is checked against the authorisation rules and, when allowed,
replaces its key in the state; a disallowed event is ignored. A key the
rules need that the state lacks is taken from the event's own
``auth_events`` unless that auth event was rejected.

The checker sees a read-only view: the current state first, then the
event's auth events, then (room version 12, where the create event is never
an auth event) the create event named by the room id. Building the view
copies nothing, so each check costs the same whatever the size of the room.

A state entry or auth event whose event was not given raises
``MissingEvents`` (through the rules, which never catch it): the check is
never made against a state with holes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import (
    CREATE_KEY,
    AuthCheck,
    MissingEvents,
    StateKey,
    StateMap,
    create_event_for,
    require,
)


class AuthStateView(Mapping[StateKey, Event]):
    """The partial state, falling back to the event's own auth events."""

    __slots__ = ("_events", "_fallback", "_state")

    def __init__(
        self, state: StateMap, events: Mapping[str, Event], fallback: Mapping[StateKey, Event]
    ) -> None:
        self._state = state
        self._events = events
        self._fallback = fallback

    def __getitem__(self, key: StateKey) -> Event:
        event_id = self._state.get(key)
        if event_id is not None:
            event = self._events.get(event_id)
            if event is None:
                raise MissingEvents([event_id])
            return event
        return self._fallback[key]

    def __iter__(self) -> Iterator[StateKey]:
        yield from self._state
        for key in self._fallback:
            if key not in self._state:
                yield key

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True


def auth_event_fallback(
    event: Event, events: Mapping[str, Event], rejected: Set[str]
) -> dict[StateKey, Event]:
    """The event's own non-rejected auth events (and its create event) by key:
    what the checks fall back on where the state lacks a key."""
    fallback: dict[StateKey, Event] = {}
    require(event.auth_event_ids, events)
    for auth_id in event.auth_event_ids:
        auth = events[auth_id]
        if auth_id not in rejected and auth.is_state():
            fallback[auth.state_tuple()] = auth
    if CREATE_KEY not in fallback:
        create = create_event_for(event, events)
        if create is not None and create.event_id not in rejected:
            fallback[CREATE_KEY] = create
    return fallback


def _allowed(check: AuthCheck, event: Event, auth_state: Mapping[StateKey, Event]) -> bool:
    try:
        check(event, auth_state)
    except MissingEvents:
        raise
    except Exception:  # any failure of the rules, or malformed content, disallows
        return False
    return True


def iterative_auth_check(
    sorted_event_ids: Iterable[str],
    initial_state: StateMap,
    events: Mapping[str, Event],
    auth_check: AuthCheck,
    rejected_event_ids: Set[str] = frozenset(),
) -> dict[StateKey, str]:
    """Apply each allowed state event of ``sorted_event_ids`` on top of ``initial_state``."""
    state = dict(initial_state)
    for event_id in sorted_event_ids:
        require([event_id], events)
        event = events[event_id]
        if not event.is_state():
            continue
        fallback = auth_event_fallback(event, events, rejected_event_ids)
        if _allowed(auth_check, event, AuthStateView(state, events, fallback)):
            state[event.state_tuple()] = event_id
    return state
