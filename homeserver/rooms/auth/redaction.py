"""Whether to *apply* a redaction: rooms/fragments/v3-handling-redactions.

Not an authorisation rule: in v10-v12 the rules treat ``m.room.redaction``
like any other event. A server applies an accepted redaction once it also
has the redacted event, and only if this returns True. The caller checks
that both events are valid and in the same room.
"""

from __future__ import annotations

from homeserver.events.model import Event
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.auth.power_levels import redact_level, user_power_level


def may_apply_redaction(
    redaction: Event, redacted: Event, power_levels: Event | None, create: Event | None
) -> bool:
    """True if the redaction's sender has the *redact level* or shares a
    server with the redacted event's sender (levels read from the state at
    the redaction)."""
    if domain_of(redaction.sender) == domain_of(redacted.sender):
        return True
    level = user_power_level(redaction.sender, power_levels, create)
    return level >= redact_level(power_levels)
