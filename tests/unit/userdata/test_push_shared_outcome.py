"""A member with default push rules whom an event does not single out gets the outcome
evaluated once for "anyone" (homeserver/push/notifications.py ``_Shared``): checked
against the full evaluation of that member's own rules, over generated bodies, names,
mentions and invites, including the characters that case-insensitive matching folds
to ASCII."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.push.evaluator import PushContext, evaluate
from homeserver.push.notifications import _ANYONE, _ANYONE_RULES, _NOTHING, _Shared
from homeserver.push.rules import build_ruleset, ordered

LETTERS = "abcdeikKsS \u0130\u0131\u017f\u212a\u00df.!@:"
names = st.one_of(st.none(), st.text(alphabet=LETTERS, max_size=6))
bodies = st.one_of(st.none(), st.text(alphabet=LETTERS, max_size=24))
USERS = ["@kis:hs", "@bob:hs", "@sk:hs"]


def event(body: str | None, mentions: list[str], invitee: str | None) -> dict[str, Any]:
    if invitee is not None:
        return {
            "type": "m.room.member",
            "sender": "@alice:hs",
            "state_key": invitee,
            "content": {"membership": "invite"},
        }
    content: dict[str, Any] = {"msgtype": "m.text"}
    if body is not None:
        content["body"] = body
    if mentions:
        content["m.mentions"] = {"user_ids": mentions}
    return {"type": "m.room.message", "sender": "@alice:hs", "content": content}


@settings(max_examples=400, deadline=None)
@given(
    body=bodies,
    name=names,
    user=st.sampled_from(USERS),
    mentions=st.lists(st.sampled_from(USERS), max_size=2),
    invitee=st.one_of(st.none(), st.sampled_from(USERS)),
    members=st.integers(min_value=2, max_value=5),
)
def test_anyone_outcome_holds_for_every_member_not_singled_out(
    body: str | None,
    name: str | None,
    user: str,
    mentions: list[str],
    invitee: str | None,
    members: int,
) -> None:
    ev = event(body, mentions, invitee)
    shared = _Shared(ev)
    ctx = PushContext(user_id=user, member_count=members, display_name=name)
    own = evaluate(ordered(build_ruleset(user, {}, {})), ev, ctx) or _NOTHING
    anyone = PushContext(user_id=_ANYONE, member_count=members)
    common = evaluate(_ANYONE_RULES, ev, anyone) or _NOTHING
    if not shared.singles_out(user, name):
        assert own == common


def test_a_display_name_in_the_body_singles_the_member_out() -> None:
    shared = _Shared(event("hi BOB how are you", [], None))
    assert shared.singles_out("@bob:hs", "Bob")
    assert not shared.singles_out("@carol:hs", "Carol")
    assert shared.singles_out("@carol:hs", "Cárol")  # outside ASCII: always in full
    # U+212A KELVIN SIGN and dotted capital I match "k" and "i" case-insensitively.
    assert _Shared(event("\u212aim", [], None)).singles_out("@k:hs", "kim")
    assert _Shared(event("k\u0130m", [], None)).singles_out("@k:hs", "kim")


def test_mentions_invites_and_glob_like_ids_single_out() -> None:
    assert _Shared(event("x", ["@bob:hs"], None)).singles_out("@bob:hs", None)
    assert _Shared(event(None, [], "@bob:hs")).singles_out("@bob:hs", None)
    assert _Shared(event("x", [], None)).singles_out("@b*b:hs", None)
    assert not _Shared(event("x", ["@bob:hs"], None)).singles_out("@carol:hs", "carol")
