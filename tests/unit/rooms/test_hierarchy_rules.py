"""Space hierarchy rules: child order and validity, who may see a room."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.hierarchy_rules import (
    allowed_room_ids,
    is_valid_child,
    may_see,
    ordered_children,
    valid_order,
)


def child(room_id: str, ts: int, **content: Any) -> dict[str, Any]:
    return {
        "type": "m.space.child",
        "state_key": room_id,
        "content": {"via": ["hs"], **content},
        "origin_server_ts": ts,
    }


def test_order_then_timestamp_then_room_id() -> None:
    children = [
        child("!d", 1),
        child("!c", 5, order="b"),
        child("!b", 9, order="a"),
        child("!a", 1),
        child("!e", 0, order="\u00e9"),  # not a valid order: treated as none
        {"type": "m.space.child", "state_key": "!gone", "content": {}, "origin_server_ts": 0},
    ]
    assert [c["state_key"] for c in ordered_children(children)] == ["!b", "!c", "!e", "!a", "!d"]


def test_valid_order_and_child() -> None:
    assert valid_order("a" * 50) and not valid_order("a" * 51)
    assert not valid_order("\x1f") and not valid_order(5)
    assert is_valid_child(child("!a", 0))
    assert not is_valid_child(child("!a", 0, via=[]))
    assert not is_valid_child({**child("!a", 0), "state_key": "not-a-room"})


def test_may_see() -> None:
    assert may_see({"join_rule": "invite"}, "join", False)
    assert may_see({"join_rule": "invite"}, "invite", False)
    assert not may_see({"join_rule": "invite"}, None, False)
    assert may_see({"join_rule": "invite", "world_readable": True}, None, False)
    for rule in ("public", "knock", "knock_restricted"):
        assert may_see({"join_rule": rule}, None, False)
    assert not may_see({"join_rule": "restricted"}, "leave", False)
    assert may_see({"join_rule": "restricted"}, None, True)


def test_allowed_room_ids() -> None:
    rules = {
        "join_rule": "restricted",
        "allow": [
            {"type": "m.room_membership", "room_id": "!space"},
            {"type": "m.other", "room_id": "!x"},
            "junk",
        ],
    }
    assert allowed_room_ids(rules) == ["!space"]
    assert allowed_room_ids({"allow": "nope"}) == []


def test_a_hostile_remote_summary_is_made_harmless() -> None:
    from homeserver.rooms.hierarchy import _remote_summary

    assert _remote_summary({"no": "room id"}) is None
    assert _remote_summary(["!a"]) is None
    got = _remote_summary(
        {
            "room_id": "!a:hs",
            "num_joined_members": "many",
            "world_readable": "yes",
            "allowed_room_ids": 5,
            "join_rule": ["public"],
            "children_state": [1, {"type": "m.space.child"}],
        }
    )
    assert got is not None
    assert got["num_joined_members"] == 0 and got["world_readable"] is False
    assert got["allowed_room_ids"] == [] and "join_rule" not in got
    assert got["children_state"] == [{"type": "m.space.child"}]
    assert not may_see(got, None, False)
