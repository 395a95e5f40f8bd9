"""Property tests of the authorisation rules (hypothesis)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, V12, RoomVersion
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth

from .authkit import ALICE, BOB, MEMBER, MOD, PL, Room, standard_room, yes

# Every room version 1-12: these properties hold in all of them.
versions = st.sampled_from(list(KNOWN_ROOM_VERSIONS.values()))
levels = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
small = st.integers(min_value=-3, max_value=3)  # collisions are where bugs live
level = st.one_of(small, levels)
TARGET = "@target:t.example"
SENDER = "@sender:s.example"


def _room(rv: RoomVersion, sender: int, target: int, **pl: Any) -> Room:
    room = standard_room(rv, users={SENDER: sender, TARGET: target}, **pl)
    room.set_member(SENDER, "join")
    room.set_member(TARGET, "join")
    return room


@settings(max_examples=300)
@given(versions, level, level, level, st.sampled_from(["ban", "leave"]))
def test_lower_or_equal_power_never_bans_or_kicks(
    rv: RoomVersion, sender: int, target: int, needed: int, membership: str
) -> None:
    key = "ban" if membership == "ban" else "kick"
    room = _room(rv, sender, target, **{key: needed})
    allowed = room.allowed(room.member(SENDER, TARGET, membership))
    if target >= sender:
        assert not allowed
    assert allowed is (sender >= needed and target < sender)


@settings(max_examples=200)
@given(level, st.sampled_from(["ban", "leave"]))
def test_nobody_bans_or_kicks_a_v12_creator(sender: int, membership: str) -> None:
    room = _room(V12, sender, 0)
    assert not room.allowed(room.member(SENDER, ALICE, membership))
    assert room.allowed(room.member(ALICE, SENDER, membership))


@settings(max_examples=300)
@given(versions, level, st.one_of(st.none(), level), st.one_of(st.none(), level))
def test_power_level_user_changes(
    rv: RoomVersion, sender: int, old: int | None, new: int | None
) -> None:
    """Nobody raises anyone above themselves, nor changes anyone at or above themselves."""
    users = {SENDER: sender} if old is None else {SENDER: sender, TARGET: old}
    room = _room(rv, sender, 0, state_default=min(sender, 0))
    base = room.put(PL, MOD, {"users": users, "state_default": min(sender, 0)})
    content: dict[str, Any] = {**base.content, "users": dict(users)}
    if new is None:
        content["users"].pop(TARGET, None)
    else:
        content["users"][TARGET] = new
    allowed = room.allowed(room.make(PL, SENDER, content, ""))
    if old == new:
        assert allowed
    else:
        ok_old = old is None or old < sender
        ok_new = new is None or new <= sender
        assert allowed is (ok_old and ok_new)


@settings(max_examples=200)
@given(versions, level, level, level)
def test_power_level_value_changes(rv: RoomVersion, sender: int, old: int, new: int) -> None:
    room = _room(rv, sender, 0)
    base = room.put(PL, MOD, {"users": {SENDER: sender}, "state_default": -(2**53) + 1, "ban": old})
    allowed = room.allowed(room.make(PL, SENDER, {**base.content, "ban": new}, ""))
    assert allowed is (old == new or (old <= sender and new <= sender))


member_content = st.fixed_dictionaries(
    {"membership": st.sampled_from(["join", "invite", "leave", "ban", "knock"])},
    optional={
        "join_authorised_via_users_server": st.sampled_from([BOB, MOD, 3, None, "x"]),
        "third_party_invite": st.one_of(
            st.none(),
            st.fixed_dictionaries(
                {},
                optional={
                    "signed": st.dictionaries(
                        st.sampled_from(["mxid", "token", "signatures"]),
                        st.sampled_from([BOB, "tok", 1, None]),
                    )
                },
            ),
        ),
    },
)


@settings(max_examples=300)
@given(
    versions,
    st.sampled_from([ALICE, BOB, MOD, "@x:y.example"]),
    st.sampled_from([ALICE, BOB, MOD, "@x:y.example"]),
    member_content,
    st.sampled_from(["public", "invite", "knock", "restricted", "knock_restricted", 7]),
)
def test_member_rules_only_raise_auth_error(
    rv: RoomVersion, sender: str, target: str, content: dict[str, Any], join_rule: Any
) -> None:
    room = standard_room(rv, join_rule)
    event = room.make(MEMBER, sender, content, target)
    try:
        check_auth(event, room.state, verify_server_signature=yes, verify_third_party_invite=yes)
    except AuthError as e:
        assert e.reason


@given(
    versions,
    st.sampled_from(["m.room.message", MEMBER, PL]),
    member_content,
    st.sampled_from([ALICE, BOB]),
    st.sampled_from([ALICE, BOB, MOD]),
)
def test_selection_has_no_duplicates(
    rv: RoomVersion, event_type: str, content: dict[str, Any], sender: str, target: str
) -> None:
    state_key = target if event_type == MEMBER else ("" if event_type == PL else None)
    got = auth_types_for_event(event_type, state_key, sender, content, rv)
    assert len(got) == len(set(got))
    assert (("m.room.create", "") in got) is (not rv.room_id_from_create_event)
    assert (MEMBER, sender) in got
