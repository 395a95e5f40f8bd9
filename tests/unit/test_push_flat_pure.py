"""The pure parts of flat push evaluation: ``build_push_room`` (push/room_members.py)
and ``EventPush.notified_among``, which must name exactly the users of a set that the
per-member ``notified`` names, without a loop over the room."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from homeserver.push.actions_store import PushActionRow, SharedRow
from homeserver.push.notifications import EventPush
from homeserver.push.room_members import (
    MAX_UNDO,
    PushRoom,
    PushRoomCache,
    advance_push_room,
    build_push_room,
)
from homeserver.rooms.room_cache import MemberChange
from homeserver.rooms.store.local_members_cache import LocalMembersCache
from homeserver.rooms.store.membership_store import Membership

USERS = [f"@u{i}:hs" for i in range(8)]


def test_build_push_room_keeps_the_local_members_and_the_newest_change() -> None:
    rows = [
        Membership(1, "@a:hs", "join", 10, 5),
        Membership(1, "@b:hs", "leave", 11, 9),
        Membership(1, "@c:elsewhere", "join", 12, 7),
        Membership(1, "@glob*:hs", "join", 13, 8),
    ]
    room = build_push_room(rows, {"@a:hs": "Ann"}, 3, ":hs")
    assert room.member_count == 3
    assert room.local == {"@a:hs", "@glob*:hs"}
    assert room.names == {"@a:hs": "Ann", "@glob*:hs": None}  # local members only
    assert room.always == {"@glob*:hs"}  # a default rule would read the id as a glob
    assert room.newest == 9
    assert room.floor == 3
    assert build_push_room([], None, 3, ":hs").newest == 0


def _row(user: str, notify: bool, highlight: bool) -> PushActionRow:
    return PushActionRow(user, 1, 2, 3, "main", notify, highlight, (), 0)


@given(
    joined=st.sets(st.sampled_from(USERS)),
    own=st.dictionaries(st.sampled_from(USERS), st.tuples(st.booleans(), st.booleans())),
    shared_notifies=st.one_of(st.none(), st.booleans()),
    sender=st.sampled_from(USERS),
    among=st.sets(st.sampled_from(USERS)),
)
def test_notified_among_is_notified_restricted_to_the_set(
    joined: set[str],
    own: dict[str, tuple[bool, bool]],
    shared_notifies: bool | None,
    sender: str,
    among: set[str],
) -> None:
    rows = [_row(u, n, h) for u, (n, h) in sorted(own.items()) if u != sender]
    shared = None
    if shared_notifies is not None:
        shared = SharedRow(1, 2, 3, "main", sender, shared_notifies, False, (), 0)
    push = EventPush(rows, shared, frozenset(joined))
    expected = sorted({r.user_id for r in push.notified() if r.notify} & among)
    assert push.notified_among(among) == expected


async def test_a_follower_cache_is_dropped_with_the_cache_it_follows() -> None:
    """``PushRoomCache`` follows the local members cache: every drop there (a membership
    written here, a bus message from another process, a bus reconnect) drops it too."""
    members = LocalMembersCache()
    follower = PushRoomCache()
    members.followers.append(follower)
    room = build_push_room([Membership(1, "@a:hs", "join", 10, 5)], {}, 0, ":hs")
    reads: list[int] = []

    async def read() -> PushRoom:
        reads.append(1)
        return room

    async def fill() -> None:
        await follower.get(1, read)
        await follower.get(2, read)

    await fill()
    assert 1 in follower and 2 in follower
    members.drop([1])  # a membership of room 1 written in this process
    assert 1 not in follower and 2 in follower
    members.drop_cached(["2"])  # another process wrote one of room 2
    assert 2 not in follower
    await fill()
    members.drop_cached(None)  # the bus reconnected: anything may have changed
    assert len(follower) == 0
    assert len(reads) == 4


# ------------------------------------------- commits bring a PushRoom up to date


def _change(user: str, membership: str, so: int, name: str | None = None) -> MemberChange:
    return MemberChange(user, membership, so, name)


def test_advance_keeps_how_to_undo_each_change_and_at_goes_back_before_an_event() -> None:
    base = build_push_room(
        [Membership(1, "@a:hs", "join", 10, 5), Membership(1, "@r:elsewhere", "join", 11, 6)],
        {"@a:hs": "Ann"},
        3,
        ":hs",
    )
    room = advance_push_room(
        base,
        [
            _change("@b:hs", "join", 8, "Bob"),
            _change("@g*:hs", "join", 9),
            _change("@a:hs", "leave", 9),
        ],
        ":hs",
    )
    assert room is not None
    assert (room.newest, room.member_count, room.floor, room.base) == (9, 3, 3, 6)
    assert room.local == {"@b:hs", "@g*:hs"}
    assert room.names == {"@b:hs": "Bob", "@g*:hs": None}
    assert room.always == {"@g*:hs"}
    # An event at 8 (the join of b) or before is evaluated with the members before it.
    for so in (7, 8):
        before = room.at(so)
        assert before is not None
        assert (before.local, before.names, before.member_count) == (
            base.local,
            base.names,
            base.member_count,
        )
        assert before.newest == 6 and before.always == frozenset()
    nine = room.at(9)
    assert nine is not None and nine.newest == 8
    assert nine.local == {"@a:hs", "@b:hs"} and nine.member_count == 3
    assert nine.names == {"@a:hs": "Ann", "@b:hs": "Bob"}
    assert room.at(10) is room
    assert room.at(6) is None  # before what was read: only a read can tell
    assert base.names == {"@a:hs": "Ann"}  # no value is changed in place
    # Joining twice or leaving twice changes nothing.
    again = advance_push_room(
        room, [_change("@b:hs", "join", 12), _change("@x:hs", "leave", 12)], ":hs"
    )
    assert again is not None and again.member_count == 3 and again.local == room.local
    assert again.at(12) is not None and again.at(12).local == room.local  # type: ignore[union-attr]


def test_advance_gives_up_where_only_a_read_can_tell() -> None:
    base = build_push_room([Membership(1, "@a:hs", "join", 10, 5)], {}, 3, ":hs")
    # A remote member: whether they were joined before is not kept.
    assert advance_push_room(base, [_change("@r:elsewhere", "join", 8)], ":hs") is None
    # A change the read may already have seen.
    assert advance_push_room(base, [_change("@b:hs", "join", 5)], ":hs") is None


def test_advance_keeps_a_bounded_number_of_changes_to_undo() -> None:
    room = build_push_room([], {}, 1, ":hs")
    last = 2 + MAX_UNDO + 10
    for so in range(2, last):
        advanced = advance_push_room(room, [_change(f"@u{so}:hs", "join", so)], ":hs")
        assert advanced is not None
        room = advanced
    assert len(room.undo) == MAX_UNDO
    assert room.at(room.base) is None  # undone too far
    back = room.at(room.base + 2)
    assert back is not None and back.member_count == room.base + 1 - 2 + 1


def test_a_commit_advances_the_follower_and_a_rollback_drops_it() -> None:
    leader = LocalMembersCache(server_name="hs")
    follower = PushRoomCache()
    leader.followers.append(follower)
    base = build_push_room([Membership(1, "@a:hs", "join", 10, 5)], {"@a:hs": None}, 3, ":hs")
    follower._values[1] = base  # as a read would have stored it
    leader._values[1] = ("@a:hs",)
    txn = object()
    leader.writing(txn, 1, "@b:hs", "join", 7, "Bob")
    assert 1 not in follower  # dropped until the commit
    leader.committed(txn, [1])
    room = follower._values[1]
    assert room.local == {"@a:hs", "@b:hs"}
    assert room.at(7) is not None and room.at(7).local == base.local  # type: ignore[union-attr]
    assert leader._values[1] == ("@a:hs", "@b:hs")
    txn = object()
    leader.writing(txn, 1, "@c:hs", "join", 8)
    leader.changed([1], txn)  # rolled back
    assert 1 not in follower and 1 not in leader
