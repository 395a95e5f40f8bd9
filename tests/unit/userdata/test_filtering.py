"""Filter parsing and matching (spec: "Filtering")."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.userdata.filtering import (
    DEFAULT_FILTER,
    EventFilter,
    RoomEventFilter,
    event_matches,
    filter_events,
    matches_everything,
    parse_filter,
    project_fields,
    room_allowed,
    type_matches,
)

MSG = {
    "type": "m.room.message",
    "sender": "@alice:hs",
    "room_id": "!a:hs",
    "content": {"body": "hi", "msgtype": "m.text"},
}
IMAGE = {**MSG, "content": {"msgtype": "m.image", "url": "mxc://hs/x"}}


def test_parse_full_filter() -> None:
    f = parse_filter(
        {
            "event_fields": ["content.body"],
            "event_format": "federation",
            "presence": {"types": ["m.presence"], "limit": 3},
            "account_data": {"not_types": ["m.*"]},
            "room": {
                "rooms": ["!a:hs"],
                "not_rooms": ["!b:hs"],
                "include_leave": True,
                "timeline": {"limit": 20, "lazy_load_members": True, "senders": ["@a:hs"]},
                "state": {"include_redundant_members": True, "contains_url": False},
                "ephemeral": {"unread_thread_notifications": True},
                "account_data": {"types": ["m.tag"]},
                "unknown": "ignored",
            },
        }
    )
    assert f.event_fields == ("content.body",) and f.event_format == "federation"
    assert f.presence == EventFilter(limit=3, types=("m.presence",))
    assert f.account_data.not_types == ("m.*",)
    assert f.room.rooms == ("!a:hs",) and f.room.not_rooms == ("!b:hs",) and f.room.include_leave
    assert f.room.timeline.limit == 20 and f.room.timeline.lazy_load_members
    assert f.room.timeline.senders == ("@a:hs",)
    assert f.room.state.include_redundant_members and f.room.state.contains_url is False
    assert f.room.ephemeral.unread_thread_notifications
    assert f.room.account_data.types == ("m.tag",)
    assert parse_filter({}) == DEFAULT_FILTER


@pytest.mark.parametrize(
    ("raw", "errcode"),
    [
        ([], "M_BAD_JSON"),
        ({"event_fields": "content"}, "M_BAD_JSON"),
        ({"event_format": 1}, "M_BAD_JSON"),
        ({"event_format": "raw"}, "M_INVALID_PARAM"),
        ({"presence": []}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": True}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": 1.5}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"limit": -1}}}, "M_INVALID_PARAM"),
        ({"room": {"state": {"not_senders": [None]}}}, "M_BAD_JSON"),
        ({"room": {"rooms": ["a:hs"]}}, "M_INVALID_PARAM"),
        ({"room": {"ephemeral": {"unread_thread_notifications": "true"}}}, "M_BAD_JSON"),
    ],
)
def test_parse_refusals(raw: object, errcode: str) -> None:
    with pytest.raises(MatrixError) as e:
        parse_filter(raw)
    assert e.value.status == 400 and e.value.errcode == errcode


def test_type_wildcards() -> None:
    assert type_matches("m.room.*", "m.room.message")
    assert type_matches("*", "anything")
    assert type_matches("m.*.member", "m.room.member")
    assert not type_matches("m.room.*", "m.roomx")
    assert not type_matches("m.room.message", "m.room.messages")
    assert not type_matches("m.room.messag?", "m.room.message")  # '?' is literal in filters
    assert not type_matches("m.room.*", "M.ROOM.MESSAGE")


def test_event_matches_types_and_senders() -> None:
    assert event_matches(EventFilter(), MSG)
    assert event_matches(EventFilter(types=("m.room.*",)), MSG)
    assert not event_matches(EventFilter(types=("m.room.*",), not_types=("*.message",)), MSG)
    assert not event_matches(EventFilter(types=()), MSG)
    assert event_matches(EventFilter(senders=("@alice:hs",)), MSG)
    assert not event_matches(EventFilter(senders=("@bob:hs",)), MSG)
    assert not event_matches(EventFilter(senders=("@alice:hs",), not_senders=("@alice:hs",)), MSG)


def test_room_event_filter_rooms_and_urls() -> None:
    assert event_matches(RoomEventFilter(rooms=("!a:hs",)), MSG)
    assert not event_matches(RoomEventFilter(rooms=("!b:hs",)), MSG)
    assert not event_matches(RoomEventFilter(not_rooms=("!a:hs",)), MSG)
    assert event_matches(RoomEventFilter(contains_url=True), IMAGE)
    assert not event_matches(RoomEventFilter(contains_url=True), MSG)
    assert event_matches(RoomEventFilter(contains_url=False), MSG)
    assert not event_matches(RoomEventFilter(contains_url=False), IMAGE)
    f = parse_filter({"room": {"timeline": {"contains_url": True}}})
    assert filter_events(f.room.timeline, [MSG, IMAGE]) == [IMAGE]


def test_room_allowed() -> None:
    f = parse_filter({"room": {"rooms": ["!a:hs", "!b:hs"], "not_rooms": ["!b:hs"]}})
    assert room_allowed(f.room, "!a:hs")
    assert not room_allowed(f.room, "!b:hs")
    assert not room_allowed(f.room, "!c:hs")
    assert room_allowed(DEFAULT_FILTER.room, "!c:hs")


def test_project_fields() -> None:
    event = {
        "type": "m.room.message",
        "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}, "msgtype": "m.text"},
        "sender": "@a:hs",
    }
    out = project_fields(event, ["type", "content.body", "content.m\\.relates_to", "nope.x"])
    assert out == {
        "type": "m.room.message",
        "content": {"body": "hi", "m.relates_to": {"rel_type": "m.thread"}},
    }
    assert project_fields(event, None) == event


FILTER_PARTS: list[dict[str, object]] = [
    {"types": ["m.room.member"]},
    {"types": []},
    {"not_types": ["m.room.message"]},
    {"senders": ["@bob:hs"]},
    {"not_senders": ["@alice:hs"]},
    {"rooms": ["!b:hs"]},
    {"not_rooms": ["!a:hs"]},
    {"contains_url": True},
    {"contains_url": False},
]


@pytest.mark.parametrize("part", FILTER_PARTS)
def test_matches_everything_only_without_criteria(part: dict[str, object]) -> None:
    """The shortcut /sync takes for an empty state filter: never for a filter that can
    turn an event away (each part here turns away MSG or IMAGE)."""
    room = RoomEventFilter(**part)  # type: ignore[arg-type]
    assert not matches_everything(room)
    assert not all(event_matches(room, e) for e in (MSG, IMAGE))
    plain = {k: v for k, v in part.items() if k in EventFilter.__slots__}
    if plain:
        assert not matches_everything(EventFilter(**plain))  # type: ignore[arg-type]


def test_matches_everything_for_empty_filters() -> None:
    for f in (
        RoomEventFilter(),
        RoomEventFilter(limit=5, lazy_load_members=True, include_redundant_members=True),
        EventFilter(limit=3),
        parse_filter({}).room.state,
        parse_filter({"room": {"state": {"lazy_load_members": True}}}).room.state,
    ):
        assert matches_everything(f)
        assert all(event_matches(f, e) for e in (MSG, IMAGE, {"type": "x"}, {}))
