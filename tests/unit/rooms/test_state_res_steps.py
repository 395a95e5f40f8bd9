"""State resolution: each step of the spec's algorithm on its own."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from homeserver.events.model import Event
from homeserver.events.room_versions import V10, V11, V12, RoomVersion
from homeserver.rooms.state_res.auth_chain import auth_chain, full_auth_chains
from homeserver.rooms.state_res.auth_difference import (
    auth_difference,
    auth_difference_from_events,
)
from homeserver.rooms.state_res.common import (
    EventEdges,
    MissingEvents,
    StateKey,
    is_power_event,
    sender_power_level,
)
from homeserver.rooms.state_res.conflicted_subgraph import conflicted_subgraph
from homeserver.rooms.state_res.iterative_auth_check import (
    AuthStateView,
    iterative_auth_check,
)
from homeserver.rooms.state_res.mainline_sort import mainline, mainline_sort
from homeserver.rooms.state_res.power_sort import power_sort, select_power_events
from homeserver.rooms.state_res.split_conflicted import split_conflicted
from tests.unit.rooms.state_res_support import (
    JR_KEY,
    MEMBER,
    PL,
    PL_KEY,
    TOPIC,
    TOPIC_KEY,
    Rejected,
    RoomBuilder,
    check_auth,
    member_key,
    power_levels,
)

ALICE, BOB = "@alice:test", "@bob:test"


def graph(edges: Mapping[str, list[str]], **extra: Any) -> dict[str, Event]:
    """Bare events: id -> auth events (a plain DAG for the graph steps)."""
    return {
        eid: Event(
            eid,
            {"type": "m.test", "state_key": eid, "sender": ALICE, "auth_events": auth, **extra},
            V11,
        )
        for eid, auth in edges.items()
    }


# --- split_conflicted ---------------------------------------------------------


def test_split_conflicted() -> None:
    a: dict[StateKey, str] = {("t", ""): "$1", ("n", ""): "$2", ("x", ""): "$3"}
    b: dict[StateKey, str] = {("t", ""): "$1", ("n", ""): "$4", ("y", ""): "$5"}
    unconflicted, conflicted = split_conflicted([a, b])
    assert unconflicted == {("t", ""): "$1"}
    assert conflicted == {("n", ""): {"$2", "$4"}, ("x", ""): {"$3"}, ("y", ""): {"$5"}}
    assert split_conflicted([]) == ({}, {})
    assert split_conflicted([a]) == (a, {})


# --- auth chains and auth difference ------------------------------------------

DAG = {
    "$c": [],
    "$p": ["$c"],
    "$a1": ["$p", "$c"],
    "$a2": ["$a1"],
    "$b1": ["$p"],
}


def test_auth_chain_excludes_the_event_itself() -> None:
    events = graph(DAG)
    assert auth_chain(["$a2"], events) == {"$a1", "$p", "$c"}
    assert auth_chain(["$a2", "$b1"], events) == {"$a1", "$p", "$c"}
    with pytest.raises(MissingEvents):
        auth_chain(["$unknown"], events)


def test_auth_difference() -> None:
    events = graph(DAG)
    sets: list[dict[StateKey, str]] = [{("k", ""): "$a2"}, {("k", ""): "$b1"}]
    chains = full_auth_chains(sets, events)
    assert chains == [{"$a1", "$p", "$c"}, {"$p", "$c"}]
    assert auth_difference(chains) == {"$a1"}
    assert auth_difference_from_events(sets, events) == {"$a1"}
    assert auth_difference([]) == set()
    three = [*sets, {("k", ""): "$c"}]
    assert auth_difference_from_events(three, events) == {"$a1", "$p", "$c"}
    assert auth_difference(full_auth_chains(three, events)) == {"$a1", "$p", "$c"}


# --- conflicted state subgraph ------------------------------------------------


def test_conflicted_subgraph_holds_paths_between_conflicted_events() -> None:
    events = graph(
        {
            "$root": [],
            "$old": ["$root"],
            "$mid1": ["$old", "$root"],
            "$mid2": ["$mid1"],
            "$new": ["$mid2", "$root"],
            "$side": ["$old"],  # cites a conflicted event but is not cited by one
            "$other": ["$root"],
        }
    )
    edges = EventEdges(events)
    assert conflicted_subgraph({"$old", "$new"}, edges) == {"$old", "$mid1", "$mid2", "$new"}
    assert conflicted_subgraph({"$new", "$other"}, edges) == {"$new", "$other"}
    with pytest.raises(MissingEvents):
        conflicted_subgraph({"$gone"}, edges)


# --- power events and the reverse topological power ordering -------------------


def test_power_events() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    kick = room.event("K", base, MEMBER, ALICE, BOB, {"membership": "leave"})
    leave = room.event("L", base, MEMBER, BOB, BOB, {"membership": "leave"})
    ban = room.event("B", base, MEMBER, ALICE, BOB, {"membership": "ban"})
    topic = room.event("T", base, TOPIC, ALICE, "", {"topic": "x"})
    message = room.event("M", base, "m.room.message", ALICE, None, {"body": "x"})
    assert [is_power_event(e) for e in (kick, leave, ban, topic, message)] == [
        True,
        False,
        True,
        False,
        False,
    ]
    assert is_power_event(room.events["$IPOWER"])
    assert is_power_event(room.events["$IJR"])
    assert not is_power_event(room.events["$CREATE"])


@pytest.mark.parametrize("version", [V10, V11, V12], ids=lambda v: v.identifier)
def test_sender_power_level(version: RoomVersion) -> None:
    room = RoomBuilder(version)
    creator_power = math.inf if version.privileged_creators else 100
    state = room.apply("CREATE", {}, "m.room.create", ALICE, "", {"creator": ALICE})
    state = room.apply("IMA", state, MEMBER, ALICE, ALICE, {"membership": "join"}, prev=["$CREATE"])
    no_pl = room.event("T0", state, TOPIC, ALICE, "", {})
    stranger = room.event("T1", state, TOPIC, BOB, "", {})
    assert sender_power_level(no_pl, room.events) == creator_power
    assert sender_power_level(stranger, room.events) == 0
    content = power_levels(version, {BOB: 42})
    content["users_default"] = 7
    state = room.apply("PL", state, PL, ALICE, "", content)
    assert sender_power_level(room.event("T2", state, TOPIC, BOB, "", {}), room.events) == 42
    other = room.event("T3", state, TOPIC, "@zed:test", "", {})
    assert sender_power_level(other, room.events) == 7
    assert sender_power_level(room.event("T4", state, TOPIC, ALICE, "", {}), room.events) == (
        creator_power
    )


def test_power_sort_tie_breaks() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    base = room.apply("PA", base, PL, ALICE, "", power_levels(V11, {BOB: 50}))
    # Same power, different timestamps; same power and timestamp, different ids;
    # lower power but earliest timestamp.
    room.event("X2", base, PL, ALICE, "", {}, ts=20)
    room.event("X1", base, PL, ALICE, "", {}, ts=30)
    room.event("X0", base, PL, ALICE, "", {}, ts=30)
    room.event("XB", base, PL, BOB, "", {}, ts=1)
    assert power_sort({"$X0", "$X1", "$X2", "$XB"}, room.events) == [
        "$X2",
        "$X0",
        "$X1",
        "$XB",
    ]


def test_power_sort_is_topological_before_power() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    bob_pl = room.apply("PA", base, PL, ALICE, "", power_levels(V11, {BOB: 50}), ts=50)
    # Bob's event cites PA; Alice's later event does not. PA must come before
    # Bob's event, yet Alice (more power) comes first of all the ready ones.
    room.event("BOBS", bob_pl, PL, BOB, "", {}, ts=60)
    room.event("ALICES", base, PL, ALICE, "", {}, ts=70)
    assert power_sort({"$PA", "$BOBS", "$ALICES"}, room.events) == ["$PA", "$ALICES", "$BOBS"]


def test_select_power_events_adds_their_auth_chain_within_the_full_set() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    state = room.apply("PA", base, PL, ALICE, "", power_levels(V11, {BOB: 50}))
    room.event("BAN", state, MEMBER, ALICE, BOB, {"membership": "ban"})
    room.event("T", state, TOPIC, ALICE, "", {})
    full = {"$BAN", "$IM0", "$T", "$IJR"}
    # $IM0 (Bob's join) is in the ban's auth chain; $IJR only through $IM0.
    assert select_power_events(full, room.events) == {"$BAN", "$IM0", "$IJR"}


def test_select_power_events_walks_only_inside_the_full_set() -> None:
    events = graph({"$e": [], "$m": ["$e"]})
    pl = {"type": PL, "state_key": "", "sender": ALICE, "auth_events": ["$m"]}
    events["$p"] = Event("$p", pl, V11)
    assert select_power_events({"$p", "$m", "$e"}, events) == {"$p", "$m", "$e"}
    # $e is reached only through $m, outside the set: it is left to the mainline.
    assert select_power_events({"$p", "$e"}, events) == {"$p"}


# --- mainline ordering --------------------------------------------------------


def test_mainline_sort() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    p1 = room.apply("P1", base, PL, ALICE, "", power_levels(V11, {BOB: 50}))
    p2 = room.apply("P2", p1, PL, ALICE, "", power_levels(V11, {BOB: 60}))
    fork = room.apply("PF", p1, PL, ALICE, "", power_levels(V11, {BOB: 70}))
    assert mainline("$P2", room.events) == ["$P2", "$P1", "$IPOWER"]
    assert mainline(None, room.events) == []

    room.event("ON_P2", p2, TOPIC, ALICE, "", {}, ts=1)
    room.event("ON_P1", p1, TOPIC, ALICE, "", {}, ts=2)
    room.event("ON_FORK", fork, TOPIC, ALICE, "", {}, ts=3)  # PF -> P1: position 1
    room.event("ON_IP_B", base, TOPIC, ALICE, "", {}, ts=4)
    room.event("ON_IP_A", base, TOPIC, ALICE, "", {}, ts=4)
    room.event("NO_PL", {}, TOPIC, ALICE, "", {}, ts=99)  # never meets the mainline
    with pytest.raises(MissingEvents):
        mainline_sort(["$ON_P2", "$GONE"], "$P2", room.events)
    ids = ["$ON_P2", "$ON_P1", "$ON_FORK", "$ON_IP_B", "$ON_IP_A", "$NO_PL"]
    assert mainline_sort(ids, "$P2", room.events) == [
        "$NO_PL",
        "$ON_IP_A",
        "$ON_IP_B",
        "$ON_P1",
        "$ON_FORK",
        "$ON_P2",
    ]
    # Without a power levels event every position is infinite: by ts, then id.
    assert mainline_sort(ids, None, room.events) == [
        "$ON_P2",
        "$ON_P1",
        "$ON_FORK",
        "$ON_IP_A",
        "$ON_IP_B",
        "$NO_PL",
    ]


# --- iterative auth checks ----------------------------------------------------


def test_iterative_auth_check_uses_auth_events_for_missing_keys() -> None:
    room = RoomBuilder(V12)
    base = room.base_room()
    room.event("T1", base, TOPIC, ALICE, "", {"topic": "1"})
    room.event("T2", base, TOPIC, BOB, "", {"topic": "2"})  # Bob lacks power
    room.event("MSG", base, "m.room.message", ALICE, None, {})
    with pytest.raises(MissingEvents):
        iterative_auth_check(["$T1", "$GONE"], {}, room.events, check_auth)
    result = iterative_auth_check(["$T1", "$T2", "$MSG"], {}, room.events, check_auth)
    assert result == {TOPIC_KEY: "$T1"}


def test_iterative_auth_check_state_takes_precedence_over_auth_events() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    room.event("T1", base, TOPIC, ALICE, "", {"topic": "1"})
    left = {**base, member_key(ALICE): "$AL"}
    room.event("AL", base, MEMBER, ALICE, ALICE, {"membership": "leave"})
    assert iterative_auth_check(["$T1"], left, room.events, check_auth) == left
    assert iterative_auth_check(["$T1"], base, room.events, check_auth) == {
        **base,
        TOPIC_KEY: "$T1",
    }


def test_iterative_auth_check_treats_checker_errors_as_rejection() -> None:
    room = RoomBuilder(V11)
    base = room.base_room()
    room.event("T1", base, TOPIC, ALICE, "", {"topic": "1"})

    def broken(event: Event, state: Mapping[StateKey, Event]) -> None:
        raise KeyError("malformed")

    assert iterative_auth_check(["$T1"], base, room.events, broken) == base


def test_auth_state_view() -> None:
    room = RoomBuilder(V11)
    room.base_room()
    alice_member = room.events["$IMA"]
    view = AuthStateView(
        {TOPIC_KEY: "$GONE", PL_KEY: "$IPOWER"}, room.events, {member_key(ALICE): alice_member}
    )
    assert view[PL_KEY].event_id == "$IPOWER"
    assert view[member_key(ALICE)] is alice_member
    assert JR_KEY not in view
    assert set(view) == {TOPIC_KEY, PL_KEY, member_key(ALICE)}
    assert len(view) == 3
    with pytest.raises(KeyError):
        view[JR_KEY]
    # A state entry whose event was not given is named, never treated as absent.
    with pytest.raises(MissingEvents):
        view[TOPIC_KEY]
    with pytest.raises(MissingEvents):
        TOPIC_KEY in view  # noqa: B015


def test_check_auth_helper_is_real() -> None:
    """The tests' checker rejects what the rules reject (guards the scenarios)."""
    room = RoomBuilder(V11)
    base = room.base_room()
    with pytest.raises(Rejected):
        room.apply("BAD", base, TOPIC, BOB, "", {"topic": "no power"})
    with pytest.raises(Rejected):
        room.apply("BAD2", base, PL, BOB, "", power_levels(V11, {BOB: 100}))
    with pytest.raises(Rejected):
        room.apply("BAD3", base, MEMBER, BOB, ALICE, {"membership": "ban"})
