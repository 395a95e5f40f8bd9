"""State resolution never guesses, whatever order its events arrived in (issue 9).

Hypothesis builds random forked room histories (``conflicts`` from the
property tests). Over the same inputs:

- the answer does not depend on the order the events were learnt (the
  ``events`` mapping built in any order) nor on the order of the state sets;
- given any part of the events, resolution either names what it misses
  (``MissingEvents``) or gives exactly the answer it gives with all of them:
  it never answers from a partial set;
- a caller that starts with nothing and adds what each attempt names (what
  ``federation.pdu.resolve`` does against the database) reaches that answer.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from homeserver.events.model import Event
from homeserver.rooms.state_res import MissingEvents, resolve_state
from homeserver.rooms.state_res.auth_chain import full_auth_chains
from homeserver.rooms.state_res.common import StateKey
from homeserver.rooms.state_res.split_conflicted import split_conflicted
from homeserver.rooms.state_res.v1.split import split_v1
from tests.unit.rooms.state_res_support import check_auth
from tests.unit.rooms.test_state_res_properties import PROPERTY_SETTINGS, History, conflicts

Case = tuple[History, list[dict[StateKey, str]]]


def _full(history: History, sets: list[dict[StateKey, str]]) -> dict[StateKey, str]:
    room = history.room
    return resolve_state(room.version, sets, room.events, None, check_auth)


def _edges(history: History) -> dict[str, list[str]]:
    return {i: e.auth_event_ids for i, e in history.room.events.items()}


@PROPERTY_SETTINGS
@given(conflicts(), st.data())
def test_arrival_order_of_events_and_sets_changes_nothing(case: Case, data: st.DataObject) -> None:
    history, sets = case
    expected = _full(history, sets)
    order = data.draw(st.permutations(sorted(history.room.events)))
    arrived = {i: history.room.events[i] for i in order}
    sets_order = data.draw(st.permutations(sets))
    room = history.room
    assert resolve_state(room.version, sets_order, arrived, None, check_auth) == expected
    chains = full_auth_chains(sets_order, arrived)
    with_ids = resolve_state(
        room.version, sets_order, arrived, chains, check_auth, auth_edges=_edges(history)
    )
    assert with_ids == expected


@PROPERTY_SETTINGS
@given(conflicts(), st.data())
def test_part_of_the_events_names_what_it_misses_or_gives_the_same_answer(
    case: Case, data: st.DataObject
) -> None:
    history, sets = case
    room = history.room
    expected = _full(history, sets)
    chains = full_auth_chains(sets, room.events)
    kept = data.draw(st.sets(st.sampled_from(sorted(room.events))))
    part: dict[str, Event] = {i: room.events[i] for i in sorted(kept)}
    try:
        got = resolve_state(
            room.version, sets, part, chains, check_auth, auth_edges=_edges(history)
        )
    except MissingEvents as e:
        assert e.event_ids
        assert not e.event_ids & part.keys()
        return
    assert got == expected


@PROPERTY_SETTINGS
@given(conflicts(), st.data())
def test_adding_what_is_named_reaches_the_answer(case: Case, data: st.DataObject) -> None:
    history, sets = case
    room = history.room
    expected = _full(history, sets)
    chains = full_auth_chains(sets, room.events)
    # Each algorithm's own notion of a conflict: v1 does not count a key some sets lack.
    split = split_v1 if room.version.state_res == 1 else split_conflicted
    _, conflicted = split(sets)
    # Learn the events in a random order: named ones are added in that order.
    rank = {i: n for n, i in enumerate(data.draw(st.permutations(sorted(room.events))))}
    given_events: dict[str, Event] = {}
    for _ in range(len(room.events) + 1):
        try:
            got = resolve_state(
                room.version, sets, given_events, chains, check_auth, auth_edges=_edges(history)
            )
            break
        except MissingEvents as e:
            assert e.event_ids <= room.events.keys()
            for event_id in sorted(e.event_ids, key=rank.__getitem__):
                given_events[event_id] = room.events[event_id]
    else:
        raise AssertionError("resolution kept naming events")
    assert got == expected
    if conflicted:
        assert set().union(*conflicted.values()) <= given_events.keys()
