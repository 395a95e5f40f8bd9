"""State resolution invariants over random forked room histories (hypothesis)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.state_res import resolve_state
from homeserver.rooms.state_res.auth_chain import full_auth_chains
from homeserver.rooms.state_res.auth_difference import (
    auth_difference,
    auth_difference_from_events,
)
from homeserver.rooms.state_res.common import StateKey
from homeserver.rooms.state_res.resolve import full_conflicted_set
from homeserver.rooms.state_res.split_conflicted import split_conflicted
from tests.unit.rooms.state_res_support import (
    JR,
    MEMBER,
    PL,
    TOPIC,
    Rejected,
    RoomBuilder,
    check_auth,
    power_levels,
)

USERS = ("@alice:test", "@bob:test", "@charlie:test", "@dave:test")

operation = st.tuples(
    st.integers(0, 1_000),  # which earlier state to fork from
    st.sampled_from(["topic", "pl", "jr", "member"]),
    st.sampled_from(USERS),  # sender
    st.sampled_from(USERS),  # target
    st.integers(0, 3),  # a value: level / membership / rule
    st.one_of(st.none(), st.integers(0, 3)),  # a timestamp that may tie
)


@dataclass
class History:
    room: RoomBuilder
    states: list[dict[StateKey, str]]


@st.composite
def histories(draw: st.DrawFn, versions: list[RoomVersion] | None = None) -> History:
    # Every version: state resolution v1 (v1), v2 (v2-v11) and v2.1 (v12).
    choices = versions or list(KNOWN_ROOM_VERSIONS.values())
    version: RoomVersion = draw(st.sampled_from(choices))
    room = RoomBuilder(version)
    states = [room.base_room(("@bob:test", "@charlie:test"))]
    operations = draw(st.lists(operation, max_size=14))
    for n, (fork, kind, sender, target, value, ts) in enumerate(operations):
        state = states[fork % len(states)]
        name = f"E{n}"
        try:
            if kind == "topic":
                new = room.apply(name, state, TOPIC, sender, "", {"topic": str(value)}, ts=ts)
            elif kind == "pl":
                levels = {u: (0, 25, 50, 100)[(value + i) % 4] for i, u in enumerate(USERS[1:])}
                new = room.apply(name, state, PL, sender, "", power_levels(version, levels), ts=ts)
            elif kind == "jr":
                rule = ("public", "invite")[value % 2]
                new = room.apply(name, state, JR, sender, "", {"join_rule": rule}, ts=ts)
            else:
                membership = ("join", "leave", "ban", "invite")[value]
                if membership == "join":
                    target = sender
                content = {"membership": membership}
                new = room.apply(name, state, MEMBER, sender, target, content, ts=ts)
        except Rejected:
            del room.events["$" + name]  # never accepted, so never in any state
            continue
        states.append(new)
    return History(room, states)


@st.composite
def conflicts(
    draw: st.DrawFn, versions: list[RoomVersion] | None = None
) -> tuple[History, list[dict[StateKey, str]]]:
    history = draw(histories(versions))
    picks = draw(st.lists(st.integers(0, len(history.states) - 1), min_size=2, max_size=4))
    return history, [history.states[i] for i in picks]


PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def _resolve(history: History, sets: list[dict[StateKey, str]]) -> dict[StateKey, str]:
    room = history.room
    return resolve_state(room.version, sets, room.events, None, check_auth)


@PROPERTY_SETTINGS
@given(histories(), st.data())
def test_single_and_identical_state_sets_resolve_to_themselves(
    history: History, data: st.DataObject
) -> None:
    state = data.draw(st.sampled_from(history.states))
    assert _resolve(history, [state]) == state
    assert _resolve(history, [state, dict(state)]) == state
    assert _resolve(history, [state, state, state]) == state


@PROPERTY_SETTINGS
@given(conflicts(), st.data())
def test_result_does_not_depend_on_order_or_repetition(
    case: tuple[History, list[dict[StateKey, str]]], data: st.DataObject
) -> None:
    history, sets = case
    result = _resolve(history, sets)
    assert _resolve(history, data.draw(st.permutations(sets))) == result
    assert _resolve(history, [*sets, sets[0]]) == result


@PROPERTY_SETTINGS
@given(conflicts())
def test_unconflicted_entries_survive(case: tuple[History, list[dict[StateKey, str]]]) -> None:
    """Step 5 puts every unconflicted entry back, in v2 and in v2.1 alike.

    (v2.1 no longer *starts* from the unconflicted map, so it may accept or
    reject conflicted events differently; it never drops an unconflicted one.)
    """
    history, sets = case
    result = _resolve(history, sets)
    unconflicted, _ = split_conflicted(sets)
    assert {k: result.get(k) for k in unconflicted} == unconflicted


@PROPERTY_SETTINGS
@given(conflicts())
def test_result_comes_from_the_full_conflicted_set(
    case: tuple[History, list[dict[StateKey, str]]],
) -> None:
    history, sets = case
    room = history.room
    result = _resolve(history, sets)
    unconflicted, conflicted = split_conflicted(sets)
    full = full_conflicted_set(room.version, sets, conflicted, room.events, None)
    for key, event_id in result.items():
        assert room.events[event_id].state_tuple() == key
        assert event_id in full or unconflicted.get(key) == event_id


@PROPERTY_SETTINGS
@given(conflicts())
def test_given_auth_chains_match_computed_ones(
    case: tuple[History, list[dict[StateKey, str]]],
) -> None:
    history, sets = case
    room = history.room
    chains = full_auth_chains(sets, room.events)
    assert auth_difference(chains) == auth_difference_from_events(sets, room.events)
    with_chains = resolve_state(room.version, sets, room.events, chains, check_auth)
    assert with_chains == _resolve(history, sets)


@PROPERTY_SETTINGS
@given(conflicts([KNOWN_ROOM_VERSIONS["1"]]))
def test_v1_keeps_every_entry_no_two_sets_disagree_on(
    case: tuple[History, list[dict[StateKey, str]]],
) -> None:
    """rooms/v1.md: a conflict is two sets holding *different* events for a key;
    an entry some sets lack but none contradicts is part of R, and stays."""
    history, sets = case
    result = _resolve(history, sets)
    for key in {k for s in sets for k in s}:
        held = {s[key] for s in sets if key in s}
        if len(held) == 1:
            assert result[key] == next(iter(held))
        else:
            assert result[key] in held
