""" "Would the event be allowed by the authorisation rules for a room in state R?"

R may lack a key the rules read (the create event of a state set that
never held it, say); as in the v2 iterative auth checks, the event's own
non-rejected auth events fill such gaps. A state entry the rules read that
is not among the events given raises ``MissingEvents``.
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import AuthCheck, MissingEvents, StateKey
from homeserver.rooms.state_res.iterative_auth_check import AuthStateView, auth_event_fallback


def allowed(
    event: Event,
    state: Mapping[StateKey, str],
    events: Mapping[str, Event],
    auth_check: AuthCheck,
    rejected: Set[str],
) -> bool:
    fallback = auth_event_fallback(event, events, rejected)
    try:
        auth_check(event, AuthStateView(state, events, fallback))
    except MissingEvents:
        raise  # never guess over an event we were not given
    except Exception:  # any failure of the rules, or malformed content, disallows
        return False
    return True
