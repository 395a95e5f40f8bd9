"""State resolution v1 (room version 1, rooms/v1.md "State resolution"), with the
real authorisation rules, and where it parts from v2."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from homeserver.events.room_versions import V1, V2
from homeserver.rooms.auth import check_auth
from homeserver.rooms.state_res import resolve_state
from homeserver.rooms.state_res.common import StateKey
from tests.unit.rooms.state_res_support import (
    PL,
    PL_KEY,
    TOPIC,
    TOPIC_KEY,
    RoomBuilder,
    member_key,
)

ALICE, BOB, CHARLIE = "@alice:test", "@bob:test", "@charlie:test"


def levels(users: dict[str, int]) -> dict[str, object]:
    return {"users": {ALICE: 100, **users}}


def resolve(room: RoomBuilder, sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
    result = resolve_state(room.version, sets, room.events, None, check_auth)
    # Whatever the order of the state sets.
    assert resolve_state(room.version, sets[::-1], room.events, None, check_auth) == result
    return result


def with_bob_powered(room: RoomBuilder) -> dict[StateKey, str]:
    base = room.base_room()
    return room.apply("PA", base, PL, ALICE, "", levels({BOB: 50}))


def test_one_state_set_and_no_conflict_resolve_to_themselves() -> None:
    room = RoomBuilder(V1)
    base = room.base_room()
    assert resolve(room, [base]) == base
    assert resolve(room, [base, dict(base)]) == base


def test_a_key_only_some_sets_hold_is_no_conflict_in_v1_but_is_in_v2() -> None:
    """Bob's topic is in one branch only; the other branch took Bob's power away.

    v1: the topic is unconflicted and joins R unchecked. v2: it is conflicted,
    and fails the auth check against the resolved power levels.
    """
    for version, topic_kept in ((V1, True), (V2, False)):
        room = RoomBuilder(version)
        base = with_bob_powered(room)
        topic = room.apply("TB", base, TOPIC, BOB, "", {"topic": "bob's"})
        demoted = room.apply("PA2", base, PL, ALICE, "", levels({BOB: 0}))
        result = resolve(room, [topic, demoted])
        assert result[PL_KEY] == "$PA2"
        assert (TOPIC_KEY in result) is topic_kept, version.identifier


def test_power_levels_pass_stops_at_the_first_disallowed_event() -> None:
    """Sorted by depth: PA2 (Bob demoted), PB (Bob's own change, now refused),
    PA3 (Alice's, which would pass). The pass stops at PB: PA2 wins."""
    room = RoomBuilder(V1)
    base = with_bob_powered(room)
    demoted = room.apply("PA2", base, PL, ALICE, "", levels({BOB: 0}))
    by_bob = room.apply("PB", base, PL, BOB, "", levels({BOB: 50, CHARLIE: 50}))
    by_alice = room.apply("PA3", base, PL, ALICE, "", levels({BOB: 50, CHARLIE: 10}))
    assert resolve(room, [demoted, by_bob, by_alice])[PL_KEY] == "$PA2"
    # Without the refused event in between, the pass goes on to the last one.
    assert resolve(room, [demoted, by_alice])[PL_KEY] == "$PA3"


def test_auth_conflicts_at_equal_depth_start_from_the_highest_sha1() -> None:
    room = RoomBuilder(V1)
    base = with_bob_powered(room)
    one = room.apply("PX", base, PL, ALICE, "", levels({BOB: 10}))
    two = room.apply("PY", base, PL, ALICE, "", levels({BOB: 20}))
    depth = room.events["$PX"].depth
    room.events["$PY"].pdu["depth"] = depth
    # Ascending depth, then descending sha1: the highest sha1 goes into R
    # first, and the other (also allowed) replaces it.
    lowest, _ = sorted(
        ["$PX", "$PY"], key=lambda i: hashlib.sha1(i.encode(), usedforsecurity=False).hexdigest()
    )
    assert resolve(room, [one, two])[PL_KEY] == lowest


def test_other_conflicts_take_the_deepest_event_that_passes() -> None:
    """Bob's later topic fails once his power is gone in R; Alice's earlier one wins."""
    room = RoomBuilder(V1)
    base = with_bob_powered(room)
    demoted = room.apply("PA2", base, PL, ALICE, "", levels({BOB: 0}))
    alice_topic = room.apply("TA", demoted, TOPIC, ALICE, "", {"topic": "alice's"})
    bob_topic = room.apply("TB", base, TOPIC, BOB, "", {"topic": "bob's"})
    result = resolve(room, [alice_topic, bob_topic])
    assert result[PL_KEY] == "$PA2"
    assert result[TOPIC_KEY] == "$TA"
    # With both allowed, the deepest wins.
    late_alice = room.apply("TC", base, TOPIC, ALICE, "", {"topic": "late"})
    assert resolve(room, [bob_topic, late_alice])[TOPIC_KEY] == "$TC"


def test_other_conflicts_where_none_passes_keep_the_shallowest() -> None:
    room = RoomBuilder(V1)
    base = with_bob_powered(room)
    t1 = room.apply("T1", base, TOPIC, BOB, "", {"topic": "one"})
    t2 = room.apply("T2", base, TOPIC, BOB, "", {"topic": "two"})
    demoted = room.apply("PA2", base, PL, ALICE, "", levels({BOB: 0}))
    # R's power levels (PA2, the only conflict-free choice after the pass) refuse both.
    result = resolve(room, [{**t1, PL_KEY: demoted[PL_KEY]}, t2])
    assert result[PL_KEY] == "$PA2"
    assert result[TOPIC_KEY] == "$T1"


def test_member_conflicts_are_resolved_per_user_after_join_rules() -> None:
    room = RoomBuilder(V1)
    base = with_bob_powered(room)
    banned = room.apply("BAN", base, "m.room.member", ALICE, CHARLIE, {"membership": "ban"})
    left = room.apply("LEAVE", base, "m.room.member", CHARLIE, CHARLIE, {"membership": "leave"})
    result = resolve(room, [banned, left])
    # Ascending depth: the ban first, then Charlie's leave, refused as he is banned in R.
    assert result[member_key(CHARLIE)] == "$BAN"
