"""Checks on an event's ``auth_events`` (v10/v11 rule 2, v12 rule 3).

The caller loads the events named in ``auth_events`` and says which of them
were rejected; this module only judges the list.
"""

from __future__ import annotations

from collections.abc import Container, Sequence

from homeserver.events.model import Event
from homeserver.rooms.auth.constants import CREATE, CREATE_KEY
from homeserver.rooms.auth.errors import AuthError
from homeserver.rooms.auth.selection import auth_types_for_event


def check_auth_events_selection(
    event: Event,
    auth_events: Sequence[Event],
    *,
    rejected_event_ids: Container[str] = (),
) -> None:
    """Rule 2 (v10/v11) / rule 3 (v12): the auth events are the right ones.

    ``auth_events`` must be exactly the events ``event.auth_events`` names.
    Refuses duplicate ``(type, state_key)`` pairs (rule .1), pairs the auth
    events selection would not pick (.2; in v12 this refuses the create
    event), rejected entries (.3), a missing create event before v12 (.4)
    and entries from another room (.5). A create event is judged by rule 1
    alone, so it passes here.
    """
    if event.type == CREATE:
        return
    cited = event.auth_event_ids
    if len(auth_events) != len(cited):
        raise AuthError("auth events given do not match the event's auth_events")
    rv = event.room_version
    allowed = auth_types_for_event(event.type, event.state_key, event.sender, event.content, rv)
    room_id = event.room_id
    seen: set[tuple[str, str]] = set()
    for auth_event in auth_events:
        if auth_event.event_id not in cited:
            raise AuthError("auth events given do not match the event's auth_events")
        if not auth_event.is_state():
            raise AuthError("an auth event is not a state event")
        key = auth_event.state_tuple()
        if key in seen:
            raise AuthError("duplicate auth event for one type and state key")
        seen.add(key)
        if key not in allowed:
            raise AuthError(f"auth event of type {key[0]} is not allowed by auth events selection")
        if auth_event.event_id in rejected_event_ids:
            raise AuthError("an auth event was rejected")
        if auth_event.room_id != room_id:
            raise AuthError("an auth event belongs to another room")
    if not rv.room_id_from_create_event and CREATE_KEY not in seen:
        raise AuthError("auth events have no m.room.create event")
