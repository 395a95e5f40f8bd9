"""Definitions shared by the state resolution steps.

Spec: "State resolution" (rooms/v2-state-res fragment; v12.md for v2.1),
section "Definitions". Everything here is pure: it reads ``Event`` objects
from a plain mapping and never fetches anything.

Resolution never guesses: an event it needs and was not given (a conflicted
event, an event of the full conflicted set, an auth event it must read, a
link of an auth chain) raises ``MissingEvents`` naming them, so the caller
can load or fetch them and call again, or give up loudly. Results over a
partial set of events would differ from every other server's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any

from homeserver.events.model import Event

StateKey = tuple[str, str]
"""``(event_type, state_key)``."""

StateMap = Mapping[StateKey, str]
"""A room state: ``(event_type, state_key)`` -> event id."""

AuthCheck = Callable[[Event, Mapping[StateKey, Event]], None]
"""The state-dependent authorisation rules: raise unless ``event`` is allowed
by the auth state given. State resolution passes a lazy view of the whole
partial state, so a checker reads only the keys the rules need."""

AuthEdges = Mapping[str, Sequence[str]]
"""The auth graph as ids only: event id -> the ids in its ``auth_events``. A
caller with a big auth chain passes this instead of loading every event."""


class MissingEvents(Exception):
    """Resolution needs these events and was not given them."""

    def __init__(self, event_ids: Iterable[str]) -> None:
        self.event_ids = frozenset(event_ids)
        super().__init__(f"state resolution needs {len(self.event_ids)} missing events")


def require(event_ids: Iterable[str], known: Collection[str]) -> None:
    """Raise ``MissingEvents`` unless every id is in ``known``."""
    missing = [event_id for event_id in event_ids if event_id not in known]
    if missing:
        raise MissingEvents(missing)


class EventEdges(Mapping[str, Sequence[str]]):
    """``AuthEdges`` read from full events (the small-room case)."""

    __slots__ = ("_events",)

    def __init__(self, events: Mapping[str, Event]) -> None:
        self._events = events

    def __getitem__(self, event_id: str) -> Sequence[str]:
        return self._events[event_id].auth_event_ids

    def __iter__(self) -> Iterator[str]:
        return iter(self._events)

    def __len__(self) -> int:
        return len(self._events)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._events


def cited(event_id: str, edges: AuthEdges) -> Sequence[str]:
    """The auth events of ``event_id``, every one of which must be known."""
    auth_ids = edges[event_id]
    require(auth_ids, edges)
    return auth_ids


CREATE = "m.room.create"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
MEMBER = "m.room.member"
CREATE_KEY: StateKey = (CREATE, "")
POWER_LEVELS_KEY: StateKey = (POWER_LEVELS, "")


def is_power_event(event: Event) -> bool:
    """Spec "Power events": power levels, join rules, or a kick/ban of another user."""
    if not event.is_state():
        return False
    if event.type in (POWER_LEVELS, JOIN_RULES):
        return True
    return (
        event.type == MEMBER
        and event.membership in ("leave", "ban")
        and event.sender != event.state_key
    )


def power_levels_auth_event(event: Event, events: Mapping[str, Event]) -> Event | None:
    """The ``m.room.power_levels`` event cited in ``event``'s ``auth_events``, if any
    (``MissingEvents`` when one of them is unknown: it might be that event)."""
    require(event.auth_event_ids, events)
    for auth_id in event.auth_event_ids:
        auth = events[auth_id]
        if auth.type == POWER_LEVELS and auth.state_key == "":
            return auth
    return None


def create_event_for(event: Event, events: Mapping[str, Event]) -> Event | None:
    """The room's create event as seen by ``event``.

    Up to room version 11 it is one of the ``auth_events``; from version 12 it
    is never listed there and the room id names it (``!`` + its hash).
    """
    if event.type == CREATE and event.state_key == "":
        return event
    if event.room_version.room_id_from_create_event:
        room_id = event.pdu.get("room_id")
        if isinstance(room_id, str) and room_id.startswith("!"):
            create_id = "$" + room_id[1:]
            require([create_id], events)
            create = events[create_id]
            if create.type == CREATE:
                return create
        return None
    require(event.auth_event_ids, events)
    for auth_id in event.auth_event_ids:
        auth = events[auth_id]
        if auth.type == CREATE and auth.state_key == "":
            return auth
    return None


def _as_int(value: Any, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return int(value)  # v1-v5 floaty power levels truncate
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return default
    return default


def sender_power_level(event: Event, events: Mapping[str, Event]) -> float:
    """The sender's power level "when looking at their respective auth_events".

    Room creators have infinite power in room version 12; without a power
    levels event the creator has 100 and everyone else 0 (auth rules).
    """
    version = event.room_version
    create = create_event_for(event, events)
    creators: set[str] = set()
    if create is not None:
        if version.implicit_room_creator:
            creators.add(create.sender)
        else:
            creator = create.content.get("creator")
            if isinstance(creator, str):
                creators.add(creator)
        if version.privileged_creators:
            extra = create.content.get("additional_creators")
            if isinstance(extra, list):
                creators.update(u for u in extra if isinstance(u, str))
            if event.sender in creators:
                return math.inf
    power_levels = power_levels_auth_event(event, events)
    if power_levels is None:
        return 100 if event.sender in creators else 0
    content = power_levels.content
    users = content.get("users")
    default = _as_int(content.get("users_default"), 0)
    if isinstance(users, dict) and event.sender in users:
        return _as_int(users[event.sender], default)
    return default
