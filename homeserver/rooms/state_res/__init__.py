"""Pure state resolution: v1 (room version 1, in ``v1/``), v2 (room versions 2-11)
and v2.1 (room version 12).

One module per step of the spec's algorithm; ``resolve_state`` runs them.
"""

from homeserver.rooms.state_res.common import (
    AuthCheck,
    AuthEdges,
    MissingEvents,
    StateKey,
    StateMap,
    is_power_event,
)
from homeserver.rooms.state_res.resolve import resolve_state

__all__ = [
    "AuthCheck",
    "AuthEdges",
    "MissingEvents",
    "StateKey",
    "StateMap",
    "is_power_event",
    "resolve_state",
]
