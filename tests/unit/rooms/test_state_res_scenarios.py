"""State resolution: the spec's classic conflicts, and where v2 and v2.1 differ."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.state_res import resolve_state
from homeserver.rooms.state_res.auth_chain import full_auth_chains
from homeserver.rooms.state_res.common import MissingEvents, StateKey
from tests.unit.rooms.state_res_support import (
    JR,
    JR_KEY,
    MEMBER,
    PL,
    PL_KEY,
    TOPIC,
    TOPIC_KEY,
    RoomBuilder,
    check_auth,
    member_key,
    power_levels,
)

ALICE, BOB, CHARLIE, EVE = "@alice:test", "@bob:test", "@charlie:test", "@eve:test"
ALL_VERSIONS = pytest.mark.parametrize("version", [V10, V11, V12], ids=lambda v: v.identifier)


def resolve(room: RoomBuilder, state_sets: Sequence[Mapping[StateKey, str]]) -> dict[StateKey, str]:
    result = resolve_state(room.version, state_sets, room.events, None, check_auth)
    # The same answer when the caller supplies the auth chains.
    chains = full_auth_chains(state_sets, room.events)
    assert resolve_state(room.version, state_sets, room.events, chains, check_auth) == result
    # And whatever the order of the state sets.
    assert resolve_state(room.version, state_sets[::-1], room.events, None, check_auth) == result
    return result


@ALL_VERSIONS
def test_ban_beats_concurrent_power_levels_change(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    after_pa = room.apply("PA", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    banned = room.apply("MB", after_pa, MEMBER, ALICE, BOB, {"membership": "ban"})
    bob_pl = room.apply("PB", after_pa, PL, BOB, "", power_levels(version, {BOB: 50, CHARLIE: 50}))

    result = resolve(room, [banned, bob_pl])

    assert result[member_key(BOB)] == "$MB"
    assert result[PL_KEY] == "$PA"  # Bob was banned first, so his change fails.
    assert result == {**base, PL_KEY: "$PA", member_key(BOB): "$MB"}


@ALL_VERSIONS
def test_topic_mainline_beats_timestamp(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    after_pa = room.apply("PA", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    # Branch A: Alice changes power levels again, then sets a topic (early ts).
    branch_a = room.apply(
        "PL2", after_pa, PL, ALICE, "", power_levels(version, {BOB: 50, CHARLIE: 10})
    )
    branch_a = room.apply("T2", branch_a, TOPIC, ALICE, "", {"topic": "a"}, ts=100)
    # Branch B: Bob sets a topic later, citing the older power levels.
    branch_b = room.apply("T3", after_pa, TOPIC, BOB, "", {"topic": "b"}, ts=200)

    result = resolve(room, [branch_a, branch_b])

    # T3's mainline position (PA, 1) is further from PL2 than T2's (PL2, 0):
    # T3 is applied first and T2 overrides it despite its earlier timestamp.
    assert result[TOPIC_KEY] == "$T2"
    assert result[PL_KEY] == "$PL2"


@ALL_VERSIONS
@pytest.mark.parametrize(("ts_alice", "ts_bob", "winner"), [(300, 200, "$TA"), (200, 300, "$TB")])
def test_topic_same_mainline_position_latest_timestamp_wins(
    version: RoomVersion, ts_alice: int, ts_bob: int, winner: str
) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    after_pa = room.apply("PA", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    branch_a = room.apply("TA", after_pa, TOPIC, ALICE, "", {"topic": "a"}, ts=ts_alice)
    branch_b = room.apply("TB", after_pa, TOPIC, BOB, "", {"topic": "b"}, ts=ts_bob)

    assert resolve(room, [branch_a, branch_b])[TOPIC_KEY] == winner


@ALL_VERSIONS
def test_topic_same_position_and_timestamp_largest_event_id_wins(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    after_pa = room.apply("PA", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    branch_a = room.apply("TZ", after_pa, TOPIC, ALICE, "", {"topic": "a"}, ts=500)
    branch_b = room.apply("TA", after_pa, TOPIC, BOB, "", {"topic": "b"}, ts=500)

    assert resolve(room, [branch_a, branch_b])[TOPIC_KEY] == "$TZ"


@ALL_VERSIONS
def test_join_rule_change_stops_concurrent_join(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    invite_only = room.apply("JR1", base, JR, ALICE, "", {"join_rule": "invite"})
    eve_joined = room.apply("ME", base, MEMBER, EVE, EVE, {"membership": "join"})

    result = resolve(room, [invite_only, eve_joined])

    assert result[JR_KEY] == "$JR1"
    assert member_key(EVE) not in result  # Her join needs the public rule.
    assert result == invite_only


@ALL_VERSIONS
def test_event_whose_authorisation_was_revoked_is_dropped(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    state = room.apply("IT", base, TOPIC, ALICE, "", {"topic": "initial"})
    state = room.apply("PA", state, PL, ALICE, "", power_levels(version, {BOB: 50}))
    demoted = room.apply("PD", state, PL, ALICE, "", power_levels(version, {BOB: 0}))
    bob_topic = room.apply("TB", state, TOPIC, BOB, "", {"topic": "bob's"})

    result = resolve(room, [demoted, bob_topic])

    assert result[PL_KEY] == "$PD"
    assert result[TOPIC_KEY] == "$IT"  # Bob's topic fails against the demotion.


@ALL_VERSIONS
def test_kick_and_concurrent_rejoin(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    state = room.apply("PA", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    kicked = room.apply("KC", state, MEMBER, BOB, CHARLIE, {"membership": "leave"})
    demoted = room.apply("PD", state, PL, ALICE, "", power_levels(version, {BOB: 0}))

    result = resolve(room, [kicked, demoted])

    # Alice (100) outranks Bob (50): her demotion sorts first, the kick then fails.
    assert result[PL_KEY] == "$PD"
    assert result[member_key(CHARLIE)] == "$IM1"


# --- Where state resolution v2 (rooms 10, 11) and v2.1 (room 12) differ -------


@pytest.mark.parametrize(
    ("version", "expected_join_rules"), [(V10, None), (V11, None), (V12, "$JR2")]
)
def test_unconflicted_state_as_starting_point(
    version: RoomVersion, expected_join_rules: str | None
) -> None:
    """MSC4297 problem A: a stale state set makes the join rules conflicted.

    Both forks agree Alice has left, and v2 replays her join rules on that
    unconflicted state, so both fail and the room loses its join rules.
    v2.1 replays them from an empty state on top of their own auth events.
    """
    room = RoomBuilder(version)
    base = room.base_room()
    state = room.apply("JR2", base, JR, ALICE, "", {"join_rule": "invite"})
    current = room.apply("AL", state, MEMBER, ALICE, ALICE, {"membership": "leave"})
    stale = {**current, JR_KEY: "$IJR"}

    result = resolve(room, [current, stale])

    assert result.get(JR_KEY) == expected_join_rules
    assert result[member_key(ALICE)] == "$AL"
    without_join_rules = {k: v for k, v in current.items() if k != JR_KEY}
    assert {k: v for k, v in result.items() if k != JR_KEY} == without_join_rules


@pytest.mark.parametrize(
    ("version", "expected_pl"), [(V10, "$IPOWER"), (V11, "$IPOWER"), (V12, "$P2")]
)
def test_conflicted_subgraph_replays_intermediate_events(
    version: RoomVersion, expected_pl: str
) -> None:
    """MSC4297 problem B: Alice promotes Bob (P1), Bob promotes Charlie (P2).

    A stale state set still holds the first power levels; both forks cite P1
    through their auth chains, so the auth difference is empty. v2 replays
    only IPOWER then P2, which fails (Bob has no power under IPOWER): a state
    reset. v2.1 adds P1, on the auth path between the conflicted events.
    """
    room = RoomBuilder(version)
    base = room.base_room()
    state = room.apply("P1", base, PL, ALICE, "", power_levels(version, {BOB: 50}))
    state = room.apply("TB", state, TOPIC, BOB, "", {"topic": "bob's"})
    current = room.apply("P2", state, PL, BOB, "", power_levels(version, {BOB: 50, CHARLIE: 50}))
    stale = {**current, PL_KEY: "$IPOWER"}

    result = resolve(room, [current, stale])

    assert result == {**current, PL_KEY: expected_pl}


# --- Inputs the caller could not complete -----------------------------------


@ALL_VERSIONS
def test_missing_conflicted_events_are_named_never_ignored(version: RoomVersion) -> None:
    """Issue 9: resolving without an event of the conflicted set used to drop it
    silently; the result could differ from every other server's."""
    room = RoomBuilder(version)
    base = room.base_room()
    branch_a = room.apply("TA", base, TOPIC, ALICE, "", {"topic": "a"})
    branch_b = {**base, TOPIC_KEY: "$GONE", ("m.room.name", ""): "$ALSO_GONE"}

    with pytest.raises(MissingEvents) as raised:
        resolve_state(version, [branch_a, branch_b], room.events, None, check_auth)

    assert raised.value.event_ids == {"$GONE", "$ALSO_GONE"}


@ALL_VERSIONS
def test_unconflicted_events_never_read_need_not_be_given(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    branch_a = room.apply("TA", base, TOPIC, ALICE, "", {"topic": "a"})
    branch_b = room.apply("TB", base, TOPIC, ALICE, "", {"topic": "b"})
    agreed = {("m.custom", ""): "$NOT_GIVEN_BUT_AGREED"}
    chains = [set(room.events) - {"$TA", "$TB"}] * 2

    result = resolve_state(
        version, [{**branch_a, **agreed}, {**branch_b, **agreed}], room.events, chains, check_auth
    )

    assert result[("m.custom", "")] == "$NOT_GIVEN_BUT_AGREED"
    assert result[TOPIC_KEY] in ("$TA", "$TB")


@ALL_VERSIONS
def test_missing_auth_event_is_named_never_skipped(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    base = room.base_room()
    branch_a = room.apply("TA", base, TOPIC, ALICE, "", {"topic": "a"})
    branch_b = room.apply("TB", base, TOPIC, ALICE, "", {"topic": "b"})
    room.events["$TB"].pdu["auth_events"].append("$UNKNOWN")

    with pytest.raises(MissingEvents) as raised:
        resolve_state(version, [branch_a, branch_b], room.events, None, check_auth)
    assert raised.value.event_ids == {"$UNKNOWN"}

    del room.events["$IJR"]  # cited by every join: the caller could not fetch it
    room.events["$TB"].pdu["auth_events"].remove("$UNKNOWN")
    with pytest.raises(MissingEvents) as raised:
        resolve_state(version, [branch_a, branch_b], room.events, None, check_auth)
    assert "$IJR" in raised.value.event_ids


def test_rejected_auth_events_are_not_used_as_fallback() -> None:
    room = RoomBuilder(V12)
    base = room.base_room()
    state = room.apply("JR2", base, JR, ALICE, "", {"join_rule": "invite"})
    current = room.apply("AL", state, MEMBER, ALICE, ALICE, {"membership": "leave"})
    stale = {**current, JR_KEY: "$IJR"}

    result = resolve_state(
        V12, [current, stale], room.events, None, check_auth, rejected_event_ids={"$IMA"}
    )

    # Without Alice's join as a fallback auth event, neither join rule passes.
    assert JR_KEY not in result


def test_trivial_inputs() -> None:
    room = RoomBuilder(V12)
    base = room.base_room()
    assert resolve_state(V12, [], room.events, None, check_auth) == {}
    assert resolve_state(V12, [base], room.events, None, check_auth) == base
    assert resolve_state(V12, [base, dict(base)], room.events, [set(), set()], check_auth) == base
    with pytest.raises(ValueError, match="one chain per state set"):
        resolve_state(V12, [base, base], room.events, [set()], check_auth)


@ALL_VERSIONS
def test_large_room_small_conflict(version: RoomVersion) -> None:
    """Thousands of unconflicted members; only the topic is in conflict."""
    room = RoomBuilder(version)
    members = tuple(f"@user{i}:test" for i in range(2000))
    base = room.base_room(members)
    branch_a = room.apply("TA", base, TOPIC, ALICE, "", {"topic": "a"}, ts=10_000)
    branch_b = room.apply("TB", base, TOPIC, ALICE, "", {"topic": "b"}, ts=10_001)

    result = resolve_state(version, [branch_a, branch_b], room.events, None, check_auth)

    assert result == branch_b
