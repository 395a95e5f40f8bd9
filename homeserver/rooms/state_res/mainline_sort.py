"""Step 3: order the remaining events by mainline.

Spec: "Mainline ordering". The mainline of the power levels event P0 of
the partially resolved state is P0, the power levels event in its auth
events, and so on. An event's mainline position is the index of the first
event of its own power levels chain (itself excluded) that lies on the
mainline, or infinity. Larger positions sort first, then smaller
``origin_server_ts``, then smaller ``event_id``.

Positions are memoised per power levels event, so each power levels event is
walked once however many events cite it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import power_levels_auth_event, require


def mainline(power_levels_id: str | None, events: Mapping[str, Event]) -> list[str]:
    """``[P0, P1, ..., Pn]``: each the power levels event in the previous one's auth events."""
    chain: list[str] = []
    seen: set[str] = set()
    if power_levels_id is not None:
        require([power_levels_id], events)
    current = events[power_levels_id] if power_levels_id is not None else None
    while current is not None and current.event_id not in seen:
        seen.add(current.event_id)
        chain.append(current.event_id)
        current = power_levels_auth_event(current, events)
    return chain


class MainlinePositions:
    """Mainline positions relative to one mainline, memoised."""

    def __init__(self, mainline_ids: list[str], events: Mapping[str, Event]) -> None:
        self._events = events
        self.infinity = len(mainline_ids)
        self._by_power_levels: dict[str, int] = {eid: i for i, eid in enumerate(mainline_ids)}

    def position(self, event: Event) -> int:
        """Mainline position of ``event``; ``self.infinity`` when it never meets the mainline."""
        path: list[str] = []
        on_path: set[str] = set()
        current = power_levels_auth_event(event, self._events)
        found = self.infinity
        while current is not None:
            known = self._by_power_levels.get(current.event_id)
            if known is not None:
                found = known
                break
            if current.event_id in on_path:  # a corrupt cycle; never on the mainline
                break
            path.append(current.event_id)
            on_path.add(current.event_id)
            current = power_levels_auth_event(current, self._events)
        for power_levels_id in path:
            self._by_power_levels[power_levels_id] = found
        return found


def mainline_sort(
    event_ids: Iterable[str], power_levels_id: str | None, events: Mapping[str, Event]
) -> list[str]:
    """``event_ids`` in the mainline ordering based on ``power_levels_id``."""
    positions = MainlinePositions(mainline(power_levels_id, events), events)
    keyed = []
    for event_id in event_ids:
        require([event_id], events)
        event = events[event_id]
        keyed.append((-positions.position(event), event.origin_server_ts, event_id))
    keyed.sort()
    return [event_id for _, _, event_id in keyed]
