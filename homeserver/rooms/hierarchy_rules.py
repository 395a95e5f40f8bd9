"""Pure rules of the space hierarchy (client-server "Spaces").

Child order ("Ordering of children within a space"): children with a valid
``order`` come first, by ``order`` (compared as strings of code points),
then by the ``origin_server_ts`` of their ``m.space.child`` event, then by
room id. A child counts only when its ``via`` is a non-empty list.

Who may see a room in a hierarchy ("GET /hierarchy", "rooms"): a member, an
invitee, anyone when the room is public, knockable or world readable, and for
a restricted room whoever is joined to one of the rooms its allow list names.
"""

from __future__ import annotations

from typing import Any

SPACE_CHILD = "m.space.child"
ALLOW_ROOM_MEMBERSHIP = "m.room_membership"
MAX_ORDER_LENGTH = 50


def valid_order(order: Any) -> bool:
    """``order``: at most 50 characters, each in U+0020..U+007E."""
    return (
        isinstance(order, str)
        and len(order) <= MAX_ORDER_LENGTH
        and all(0x20 <= ord(c) <= 0x7E for c in order)
    )


def is_valid_child(child: dict[str, Any]) -> bool:
    """A stripped ``m.space.child`` event that names a child (non-empty ``via``)."""
    content = child.get("content")
    via = content.get("via") if isinstance(content, dict) else None
    return (
        child.get("type") == SPACE_CHILD
        and isinstance(child.get("state_key"), str)
        and child["state_key"].startswith("!")
        and isinstance(via, list)
        and len(via) > 0
        and all(isinstance(v, str) for v in via)
    )


def ordered_children(children: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Valid child events in the spec's order."""

    def key(child: dict[str, Any]) -> tuple[int, str, int, str]:
        order = child["content"].get("order")
        ts = child.get("origin_server_ts")
        ts = ts if isinstance(ts, int) else 0
        if valid_order(order):
            return (0, order, ts, child["state_key"])
        return (1, "", ts, child["state_key"])

    return sorted((c for c in children if is_valid_child(c)), key=key)


def allowed_room_ids(join_rules: dict[str, Any]) -> list[str]:
    """The rooms named by ``m.room_membership`` conditions of a restricted room."""
    allow = join_rules.get("allow")
    if not isinstance(allow, list):
        return []
    return [
        a["room_id"]
        for a in allow
        if isinstance(a, dict)
        and a.get("type") == ALLOW_ROOM_MEMBERSHIP
        and isinstance(a.get("room_id"), str)
    ]


def may_see(summary: dict[str, Any], membership: str | None, joined_to_allowed: bool) -> bool:
    """May a user with ``membership`` (None: none) see this room in a hierarchy?"""
    if membership in ("join", "invite") or summary.get("world_readable") is True:
        return True
    rule = summary.get("join_rule")
    if rule in ("public", "knock", "knock_restricted"):
        return True
    return rule in ("restricted", "knock_restricted") and joined_to_allowed
