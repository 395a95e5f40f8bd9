"""The pure parts of simplified sliding sync: request checks, required_state matching,
list filters, order and ranges."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.sync.sliding.lists import Candidate, _passes, in_ranges, sort_rooms
from homeserver.sync.sliding.request import ListFilters, RoomParams, parse_request
from homeserver.sync.sliding.required_state import matches, needed_keys

ME = "@me:hs"


def test_parse_request_defaults_and_fields() -> None:
    req = parse_request(
        {
            "conn_id": "main",
            "lists": {
                "all": {
                    "ranges": [[0, 9], [20, 29]],
                    "timeline_limit": 3,
                    "required_state": [["m.room.name", ""], ["m.room.name", ""]],
                    "filters": {"is_dm": True, "room_types": [None, "m.space"]},
                }
            },
            "room_subscriptions": {"!a:hs": {"timeline_limit": 20}},
            "unsubscribe_rooms": ["!b:hs"],
            "extensions": {"to_device": {"enabled": True, "since": "12", "limit": 5}},
        }
    )
    assert req.conn_id == "main"
    lst = req.lists["all"]
    assert lst.ranges == ((0, 9), (20, 29))
    assert lst.params == RoomParams((("m.room.name", ""),), 3)
    assert lst.filters.is_dm is True and lst.filters.room_types == (None, "m.space")
    assert req.room_subscriptions["!a:hs"].timeline_limit == 20
    assert req.unsubscribe_rooms == ("!b:hs",)
    ext = req.extensions
    assert ext.to_device.enabled and ext.to_device_since == 12 and ext.to_device_limit == 5
    assert not ext.e2ee.enabled
    assert parse_request({}).lists == {}


@pytest.mark.parametrize(
    "body",
    [
        {"lists": {"a": {"ranges": [[0]]}}},
        {"lists": {"a": {"ranges": [[0, True]]}}},
        {"lists": {"a": {"timeline_limit": 101}}},
        {"lists": {"a": {"required_state": "all"}}},
        {"lists": {"a": {"filters": {"spaces": ["!s", 1]}}}},
        {"unsubscribe_rooms": "!a"},
        {"extensions": {"typing": {"enabled": "yes"}}},
        {"extensions": {"to_device": {"limit": 0}}},
    ],
)
def test_parse_request_refusals(body: dict[str, Any]) -> None:
    with pytest.raises(MatrixError) as err:
        parse_request(body)
    assert err.value.errcode == "M_INVALID_PARAM"


def test_merge_is_a_union() -> None:
    a = RoomParams((("m.room.name", ""),), 1)
    b = RoomParams((("m.room.topic", ""), ("m.room.name", "")), 5)
    assert a.merge(b) == RoomParams((("m.room.name", ""), ("m.room.topic", "")), 5)


def test_required_state_rules() -> None:
    pairs = [("m.room.member", "$LAZY"), ("m.room.member", "$ME"), ("m.room.name", "")]
    assert needed_keys(pairs, ME, ["@b:hs"]) == [
        ("m.room.member", "@b:hs"),
        ("m.room.member", ME),
        ("m.room.name", ""),
    ]
    assert matches(pairs, ME, ["@b:hs"], ("m.room.member", "@b:hs"))
    assert not matches(pairs, ME, ["@b:hs"], ("m.room.member", "@c:hs"))
    assert matches(pairs, ME, [], ("m.room.member", ME))
    assert needed_keys([("*", "*")], ME, []) is None
    assert needed_keys([("m.room.member", "*")], ME, []) is None
    assert matches([("m.room.member", "*")], ME, [], ("m.room.member", "@x:hs"))
    assert matches([("*", "")], ME, [], ("m.room.topic", ""))
    assert not matches([("*", "")], ME, [], ("m.room.member", ME))
    # $LAZY means nothing for other types.
    assert needed_keys([("m.room.name", "$LAZY")], ME, ["@b:hs"]) == []


def candidate(room_id: str, bump: int, membership: str = "join", **facts: Any) -> Candidate:
    info = RoomInfo(1, room_id, KNOWN_ROOM_VERSIONS["12"], ME)
    return Candidate(
        info=info,
        membership=Membership(1, ME, membership, 1, bump),
        bump_stamp=bump,
        is_encrypted=facts.get("enc", False),
        room_type=facts.get("room_type"),
        is_dm=facts.get("dm", False),
    )


def test_order_ranges_and_filters() -> None:
    rooms = [
        candidate("!b", 5),
        candidate("!a", 5),
        candidate("!c", 9, "invite", dm=True),
        candidate("!s", 1, room_type="m.space", enc=True),
    ]
    ordered = sort_rooms(rooms)
    assert [c.info.room_id for c in ordered] == ["!c", "!a", "!b", "!s"]
    assert in_ranges(ordered, [(0, 1), (1, 2), (10, 20)]) == ["!c", "!a", "!b"]

    def ids(f: ListFilters, children: set[str] | None = None) -> list[str]:
        return [c.info.room_id for c in ordered if _passes(c, f, children)]

    assert ids(ListFilters(is_dm=True)) == ["!c"]
    assert ids(ListFilters(is_invite=False)) == ["!a", "!b", "!s"]
    assert ids(ListFilters(is_encrypted=True)) == ["!s"]
    assert ids(ListFilters(room_types=(None,))) == ["!c", "!a", "!b"]
    assert ids(ListFilters(not_room_types=("m.space",))) == ["!c", "!a", "!b"]
    assert ids(ListFilters(), children={"!b"}) == ["!b"]
