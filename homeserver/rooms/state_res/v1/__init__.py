"""State resolution v1 (room version 1): spec rooms/v1.md "State resolution".

One module per pass of the algorithm; ``resolve_state_v1`` runs them.
"""

from homeserver.rooms.state_res.v1.resolve import resolve_state_v1

__all__ = ["resolve_state_v1"]
