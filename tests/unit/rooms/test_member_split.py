"""``MemberSplits`` (rooms/member_split.py): a lazy-loaded /sync's view of a state group
is its non-member entries and the asked-for users' member entries; the names are read
once per group, and again only when the store hands out another object for the group
(its cached groups were forgotten: changed in place)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from homeserver.rooms.member_split import MemberSplits

NAMES = {
    1: ("m.room.create", ""),
    2: ("m.room.power_levels", ""),
    3: ("m.room.member", "@a:hs"),
    4: ("m.room.member", "@b:hs"),
    5: ("m.room.member", "@c:hs"),
}


class Names:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, nids: Iterable[int]) -> Mapping[int, tuple[str, str]]:
        self.calls += 1
        return {n: NAMES[n] for n in nids if n in NAMES}


async def test_pick_keeps_other_state_and_only_the_asked_members() -> None:
    splits, names = MemberSplits(), Names()
    state = {1: 101, 2: 102, 3: 103, 4: 104, 5: 105, 9: 109}  # 9: no name, left out
    assert await splits.pick(7, state, {"@b:hs", "@nobody:hs"}, names) == {1: 101, 2: 102, 4: 104}
    assert await splits.pick(7, state, (), names) == {1: 101, 2: 102}
    assert await splits.pick(7, state, ["@a:hs", "@c:hs"], names) == {
        1: 101,
        2: 102,
        3: 103,
        5: 105,
    }
    assert names.calls == 1  # one split per group
    # The store forgot its groups and loaded this one again (changed in place): split again.
    changed = {**state, 4: 204}
    assert await splits.pick(7, changed, {"@b:hs"}, names) == {1: 101, 2: 102, 4: 204}
    assert names.calls == 2


async def test_splits_are_bounded() -> None:
    splits, names = MemberSplits(max_groups=2), Names()
    states = {g: {1: g, 3: g + 100} for g in range(4)}
    for g, state in states.items():
        assert await splits.pick(g, state, {"@a:hs"}, names) == {1: g, 3: g + 100}
    assert names.calls == 4
    await splits.pick(3, states[3], (), names)  # kept
    assert names.calls == 4
    await splits.pick(0, states[0], (), names)  # evicted: split again
    assert names.calls == 5
