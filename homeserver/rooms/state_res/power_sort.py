"""Step 1: select the power events and sort them.

Spec: "Reverse topological power ordering" and algorithm step 1. The set X
is every power event of the full conflicted set plus the events of their
auth chains that are also in the full conflicted set. X is sorted with
Kahn's algorithm over the ``auth_events`` edges between events of X, taking
at each step the smallest ready event by: greater sender power level (from
the event's own auth events), then smaller ``origin_server_ts``, then
smaller ``event_id``. Earliest events come first.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Set

from homeserver.events.model import Event
from homeserver.rooms.state_res.common import is_power_event, sender_power_level


def select_power_events(full_conflicted: Set[str], events: Mapping[str, Event]) -> set[str]:
    """X: power events of the full conflicted set and their auth chains within it.

    The walk from each power event follows ``auth_events`` links only while
    they stay inside the full conflicted set. An event of the set reachable
    only through an event outside it is left to the mainline step: that is
    how deployed servers (Synapse, ruma) read the step, and matching them is
    what keeps room state convergent across implementations.
    """
    selected = {
        event_id
        for event_id in full_conflicted
        if event_id in events and is_power_event(events[event_id])
    }
    stack = list(selected)
    while stack:
        for auth_id in events[stack.pop()].auth_event_ids:
            if auth_id in full_conflicted and auth_id not in selected and auth_id in events:
                selected.add(auth_id)
                stack.append(auth_id)
    return selected


def power_sort(event_ids: Set[str], events: Mapping[str, Event]) -> list[str]:
    """The reverse topological power ordering of ``event_ids`` (earliest first)."""
    cited_by: dict[str, list[str]] = {event_id: [] for event_id in event_ids}
    waiting_on: dict[str, int] = {}
    for event_id in event_ids:
        cited = {a for a in events[event_id].auth_event_ids if a in cited_by and a != event_id}
        waiting_on[event_id] = len(cited)
        for auth_id in cited:
            cited_by[auth_id].append(event_id)

    def order_key(event_id: str) -> tuple[float, int, str]:
        event = events[event_id]
        return (-sender_power_level(event, events), event.origin_server_ts, event_id)

    ready = [order_key(e) for e, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    result: list[str] = []
    while ready:
        event_id = heapq.heappop(ready)[2]
        result.append(event_id)
        for citing in cited_by[event_id]:
            waiting_on[citing] -= 1
            if waiting_on[citing] == 0:
                heapq.heappush(ready, order_key(citing))
    # Events left waiting sit on an auth cycle, which content-hashed event ids
    # make impossible; such a graph is corrupt and those events are ignored.
    return result
