"""Conflicted state subgraph (state resolution v2.1, room version 12).

Spec (v12.md): "Starting from an event in the conflicted state set and
following auth_events edges may lead to another event in the conflicted state
set. The union of all such paths between any pair of events in the conflicted
state set (including endpoints) forms ... the conflicted state subgraph."

An event lies on such a path exactly when it is reachable from a conflicted
event and a conflicted event is reachable from it. Two linear walks find
them: forward along ``auth_events`` from the conflicted set (recording the
reversed edges), then backward from the conflicted set along those edges.
"""

from __future__ import annotations

from collections.abc import Set

from homeserver.rooms.state_res.common import AuthEdges, cited, require


def conflicted_subgraph(conflicted: Set[str], edges: AuthEdges) -> set[str]:
    """Events on an ``auth_events`` path between two conflicted events, endpoints included.

    ``edges`` may be ``EventEdges(events)`` or ids loaded alone for a big room.
    """
    starts = list(conflicted)
    require(starts, edges)
    cited_by: dict[str, list[str]] = {}
    reached = set(starts)
    stack = list(starts)
    while stack:
        event_id = stack.pop()
        for auth_id in set(cited(event_id, edges)):
            cited_by.setdefault(auth_id, []).append(event_id)
            if auth_id not in reached:
                reached.add(auth_id)
                stack.append(auth_id)
    subgraph = set(starts)
    stack = list(starts)
    while stack:
        for citing in cited_by.get(stack.pop(), ()):
            if citing not in subgraph:
                subgraph.add(citing)
                stack.append(citing)
    return subgraph
