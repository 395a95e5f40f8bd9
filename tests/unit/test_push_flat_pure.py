"""The pure parts of flat push evaluation: ``build_push_room`` (push/room_members.py)
and ``EventPush.notified_among``, which must name exactly the users of a set that the
per-member ``notified`` names, without a loop over the room."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from homeserver.push.actions_store import PushActionRow, SharedRow
from homeserver.push.notifications import EventPush
from homeserver.push.room_members import PushRoom, PushRoomCache, build_push_room
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
