"""m.room.member: v10/v11 rule 4, v12 rule 5, as tables run for each version.

standard_room: ALICE (creator; 100, or infinite in v12), MOD (50) and BOB (0)
joined; CAROL and DAVE absent. Default levels: invite 0, kick 50, ban 50.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytest

from homeserver.events.room_versions import RoomVersion

from .authkit import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    JR,
    MEMBER,
    MOD,
    VERSION_IDS,
    VERSIONS,
    standard_room,
    yes,
)

AUTH = "join_authorised_via_users_server"


class Case(NamedTuple):
    name: str
    sender: str
    target: str
    membership: str
    allowed: bool
    join_rule: str | None = "public"
    members: dict[str, str] | None = None  # memberships to set before the event
    users: dict[str, int] | None = None
    levels: dict[str, Any] | None = None
    content: dict[str, Any] | None = None


CASES = [
    # join (.3)
    Case("public join", CAROL, CAROL, "join", True),
    Case("join for someone else", BOB, CAROL, "join", False),
    Case("banned cannot join public", CAROL, CAROL, "join", False, members={CAROL: "ban"}),
    Case("rejoin to change profile", BOB, BOB, "join", True, join_rule="invite"),
    Case("invite-only uninvited", CAROL, CAROL, "join", False, join_rule="invite"),
    Case("invite-only invited", CAROL, CAROL, "join", True, "invite", {CAROL: "invite"}),
    Case("invite-only after leave", CAROL, CAROL, "join", False, "invite", {CAROL: "leave"}),
    Case("knock rule uninvited", CAROL, CAROL, "join", False, join_rule="knock"),
    Case("knock rule knocking", CAROL, CAROL, "join", False, "knock", {CAROL: "knock"}),
    Case("knock rule invited", CAROL, CAROL, "join", True, "knock", {CAROL: "invite"}),
    Case("no join rules event: invite", CAROL, CAROL, "join", False, join_rule=None),
    Case("no join rules, invited", CAROL, CAROL, "join", True, None, {CAROL: "invite"}),
    Case("private is not a join rule", CAROL, CAROL, "join", False, join_rule="private"),
    Case("restricted invited", CAROL, CAROL, "join", True, "restricted", {CAROL: "invite"}),
    Case("restricted joined", BOB, BOB, "join", True, join_rule="restricted"),
    Case("restricted, no authoriser", CAROL, CAROL, "join", False, join_rule="restricted"),
    Case("restricted via member", CAROL, CAROL, "join", True, "restricted", content={AUTH: BOB}),
    Case(
        "knock_restricted via member",
        CAROL,
        CAROL,
        "join",
        True,
        "knock_restricted",
        content={AUTH: MOD},
    ),
    Case(
        "restricted via non-member", CAROL, CAROL, "join", False, "restricted", content={AUTH: DAVE}
    ),
    Case(
        "restricted via invited user",
        CAROL,
        CAROL,
        "join",
        False,
        "restricted",
        {DAVE: "invite"},
        content={AUTH: DAVE},
    ),
    Case(
        "restricted via user without invite power",
        CAROL,
        CAROL,
        "join",
        False,
        "restricted",
        levels={"invite": 50},
        content={AUTH: BOB},
    ),
    Case(
        "restricted via user with invite power",
        CAROL,
        CAROL,
        "join",
        True,
        "restricted",
        levels={"invite": 50},
        content={AUTH: MOD},
    ),
    Case(
        "restricted, banned",
        CAROL,
        CAROL,
        "join",
        False,
        "restricted",
        {CAROL: "ban"},
        content={AUTH: MOD},
    ),
    Case(
        "restricted, authoriser not a string",
        CAROL,
        CAROL,
        "join",
        False,
        "restricted",
        content={AUTH: 5},
    ),
    # invite (.4)
    Case("member invites", BOB, CAROL, "invite", True),
    Case("non-member invites", DAVE, CAROL, "invite", False),
    Case("invited user invites", DAVE, CAROL, "invite", False, members={DAVE: "invite"}),
    Case("invite a joined user", MOD, BOB, "invite", False),
    Case("invite a banned user", MOD, CAROL, "invite", False, members={CAROL: "ban"}),
    Case("re-invite an invited user", MOD, CAROL, "invite", True, members={CAROL: "invite"}),
    Case("invite a knocking user", MOD, CAROL, "invite", True, members={CAROL: "knock"}),
    Case("below invite level", BOB, CAROL, "invite", False, levels={"invite": 50}),
    Case("at invite level", MOD, CAROL, "invite", True, levels={"invite": 50}),
    # leave (.5)
    Case("leave when joined", BOB, BOB, "leave", True),
    Case("reject an invite", CAROL, CAROL, "leave", True, members={CAROL: "invite"}),
    Case("rescind a knock", CAROL, CAROL, "leave", True, members={CAROL: "knock"}),
    Case("leave when absent", CAROL, CAROL, "leave", False),
    Case("leave when left", CAROL, CAROL, "leave", False, members={CAROL: "leave"}),
    Case("banned cannot leave", CAROL, CAROL, "leave", False, members={CAROL: "ban"}),
    Case("kick by moderator", MOD, BOB, "leave", True),
    Case("kick by non-member", DAVE, BOB, "leave", False),
    Case("kick below kick level", BOB, MOD, "leave", False, users={BOB: 40}),
    Case("kick an equal", MOD, DAVE, "leave", False, members={DAVE: "join"}, users={DAVE: 50}),
    Case("kick a superior", MOD, ALICE, "leave", False),
    Case("kick with raised kick level", MOD, BOB, "leave", False, levels={"kick": 60}),
    Case("revoke an invite", MOD, CAROL, "leave", True, members={CAROL: "invite"}),
    Case("unban with ban level", MOD, CAROL, "leave", True, members={CAROL: "ban"}),
    Case(
        "unban below ban level",
        MOD,
        CAROL,
        "leave",
        False,
        members={CAROL: "ban"},
        levels={"ban": 60},
    ),
    Case(
        "unban without kick level",
        MOD,
        CAROL,
        "leave",
        False,
        members={CAROL: "ban"},
        levels={"kick": 60},
    ),
    # ban (.6)
    Case("ban by moderator", MOD, BOB, "ban", True),
    Case("ban an absent user", MOD, CAROL, "ban", True),
    Case("ban by non-member", DAVE, BOB, "ban", False, users={DAVE: 100}),
    Case("ban below ban level", BOB, CAROL, "ban", False),
    Case("ban an equal", MOD, DAVE, "ban", False, users={DAVE: 50}),
    Case("ban a superior", MOD, ALICE, "ban", False),
    Case("ban oneself", MOD, MOD, "ban", False),
    Case(
        "ban with lowered ban level", BOB, CAROL, "ban", True, levels={"ban": 0}, users={CAROL: -1}
    ),
    # knock (.7)
    Case("knock on knock room", CAROL, CAROL, "knock", True, join_rule="knock"),
    Case("knock on knock_restricted", CAROL, CAROL, "knock", True, join_rule="knock_restricted"),
    Case("knock on public room", CAROL, CAROL, "knock", False),
    Case("knock on invite room", CAROL, CAROL, "knock", False, join_rule="invite"),
    Case("knock on restricted room", CAROL, CAROL, "knock", False, join_rule="restricted"),
    Case("knock for someone else", BOB, CAROL, "knock", False, join_rule="knock"),
    Case("knock when banned", CAROL, CAROL, "knock", False, "knock", {CAROL: "ban"}),
    Case("knock when invited", CAROL, CAROL, "knock", False, "knock", {CAROL: "invite"}),
    Case("knock when joined", BOB, BOB, "knock", False, join_rule="knock"),
    Case("knock again", CAROL, CAROL, "knock", True, "knock", {CAROL: "knock"}),
    Case("knock after leave", CAROL, CAROL, "knock", True, "knock", {CAROL: "leave"}),
    # unknown (.8)
    Case("unknown membership", BOB, BOB, "frobnicate", False),
]


def run(rv: RoomVersion, case: Case) -> bool:
    room = standard_room(rv, case.join_rule, users=case.users, **(case.levels or {}))
    for user, membership in (case.members or {}).items():
        room.set_member(user, membership)
    event = room.member(case.sender, case.target, case.membership, **(case.content or {}))
    return room.allowed(event, verify_server_signature=yes)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_membership_table(rv: RoomVersion, case: Case) -> None:
    assert run(rv, case) is case.allowed


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_member_event_without_state_key_or_membership_is_refused(rv: RoomVersion) -> None:
    room = standard_room(rv)
    assert not room.allowed(room.make(MEMBER, CAROL, {"membership": "join"}))
    assert not room.allowed(room.make(MEMBER, CAROL, {}, CAROL))
    assert not room.allowed(room.make(MEMBER, CAROL, {"membership": 1}, CAROL))


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_authorising_server_signature_hook(rv: RoomVersion) -> None:
    room = standard_room(rv, "restricted")
    seen: list[tuple[str, str]] = []

    def verify(event: Any, server: str) -> bool:
        seen.append((event.event_id, server))
        return server == "a.example"

    good = room.member(CAROL, CAROL, "join", **{AUTH: MOD})
    assert room.allowed(good, verify_server_signature=verify)
    assert seen == [(good.event_id, "a.example")]
    bad = room.member(CAROL, CAROL, "join", **{AUTH: BOB})  # b.example did not sign
    assert not room.allowed(bad, verify_server_signature=verify)
    # Without the hook the signature cannot be checked: refused.
    assert not room.allowed(good)
    # Rule .2 applies to every membership that carries the key.
    leave = room.member(BOB, BOB, "leave", **{AUTH: MOD})
    assert not room.allowed(leave)
    assert room.allowed(leave, verify_server_signature=verify)


@pytest.mark.parametrize("rv", VERSIONS, ids=VERSION_IDS)
def test_join_rules_without_join_rule_refuses_joins(rv: RoomVersion) -> None:
    room = standard_room(rv)
    room.put(JR, ALICE, {})
    assert not room.allowed(room.member(CAROL, CAROL, "join"))
