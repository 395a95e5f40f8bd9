"""Push rule evaluation over concrete events (spec: "Push Rules", "Predefined Rules")."""

from __future__ import annotations

from dataclasses import replace

import pytest

from homeserver.events.paths import glob_in_words, glob_matches, lookup, split_path
from homeserver.push.evaluator import (
    PushContext,
    condition_holds,
    evaluate,
    event_property_contains,
    event_property_is,
    tweaks,
)
from homeserver.push.rules import DefaultOverride, PushRule, build_ruleset, ordered

ME = "@alice:hs"
ROOM = "!r:hs"
GROUP = PushContext(user_id=ME, member_count=5, display_name="Alice Liddell")
ONE_TO_ONE = replace(GROUP, member_count=2)


def rules() -> list[PushRule]:
    return ordered(build_ruleset(ME, {}, {}))


def msg(body: str, **content: object) -> dict[str, object]:
    return {
        "type": "m.room.message",
        "sender": "@bob:hs",
        "room_id": ROOM,
        "content": {"msgtype": "m.text", "body": body, **content},
    }


def test_dot_paths() -> None:
    assert split_path("content.m\\.relates_to.rel_type") == ("content", "m.relates_to", "rel_type")
    assert split_path("content.m\\\\foo") == ("content", "m\\foo")
    assert split_path("content.a\\xb") == ("content", "a\\xb")
    ev = {"content": {"m.relates_to": {"rel_type": "m.replace"}, "m\\foo": 1}}
    assert lookup(ev, "content.m\\.relates_to.rel_type") == "m.replace"
    assert lookup(ev, "content.m\\\\foo") == 1


def test_globs_from_the_spec() -> None:
    for value in ("Lunch plans", "LUNCH"):
        assert glob_matches("lunc?*", value)
    for value in (" lunch", "lunc"):
        assert not glob_matches("lunc?*", value)
    for body in ("An example event.", "exple", "An exciting triple-whammy"):
        assert glob_in_words("ex*ple", body)
    assert not glob_in_words("ex*ple", "examples")
    assert not glob_in_words("cake", "cupcake")


def test_plain_message_in_group_notifies_without_highlight() -> None:
    out = evaluate(rules(), msg("hello all"), GROUP)
    assert out is not None and out.rule_id == ".m.rule.message"
    assert out.notify and not out.highlight and out.sound is None


def test_message_mentioning_display_name_only_notifies() -> None:
    # v1.17 dropped the body-matching defaults: the name in the body alone is a plain message.
    event = msg("hey Alice Liddell, lunch?")
    out = evaluate(rules(), event, GROUP)
    assert out is not None and out.rule_id == ".m.rule.message" and not out.highlight
    # The (deprecated) contains_display_name condition still works for user rules.
    cond = {"kind": "contains_display_name"}
    assert condition_holds(cond, event, GROUP)
    assert not condition_holds(cond, msg("hey AliceLiddell"), GROUP)
    assert condition_holds(cond, msg("ALICE LIDDELL!"), GROUP)
    assert not condition_holds(cond, event, replace(GROUP, display_name=None))
    user_rule = PushRule(
        "override", "name", ("notify", {"set_tweak": "highlight"}), conditions=(cond,)
    )
    out = evaluate([user_rule, *rules()], event, GROUP)
    assert out is not None and out.rule_id == "name" and out.highlight


def test_m_mentions_user_mention_highlights() -> None:
    event = msg("hi", **{"m.mentions": {"user_ids": ["@carol:hs", ME]}})
    out = evaluate(rules(), event, GROUP)
    assert out is not None and out.rule_id == ".m.rule.is_user_mention"
    assert out.notify and out.highlight and out.sound == "default"
    other = msg("hi", **{"m.mentions": {"user_ids": ["@carol:hs"]}})
    assert evaluate(rules(), other, GROUP).rule_id == ".m.rule.message"  # type: ignore[union-attr]


def test_room_mention_needs_sender_permission() -> None:
    event = msg("everyone!", **{"m.mentions": {"room": True}})
    low = replace(GROUP, sender_power_level=0, notification_levels={})
    assert evaluate(rules(), event, low).rule_id == ".m.rule.message"  # type: ignore[union-attr]
    mod = replace(GROUP, sender_power_level=50)
    out = evaluate(rules(), event, mod)
    assert out is not None and out.rule_id == ".m.rule.is_room_mention" and out.highlight
    custom = replace(GROUP, sender_power_level=10, notification_levels={"room": 10})
    assert evaluate(rules(), event, custom).rule_id == ".m.rule.is_room_mention"  # type: ignore[union-attr]
    # "true" as a string is not true.
    fake = msg("x", **{"m.mentions": {"room": "true"}})
    assert evaluate(rules(), fake, mod).rule_id == ".m.rule.message"  # type: ignore[union-attr]


def test_notice_is_suppressed() -> None:
    out = evaluate(rules(), msg("bot says hi", msgtype="m.notice"), ONE_TO_ONE)
    assert out is not None and out.rule_id == ".m.rule.suppress_notices"
    assert not out.notify and out.actions == ()


def test_reaction_is_suppressed() -> None:
    event = {
        "type": "m.reaction",
        "sender": "@bob:hs",
        "room_id": ROOM,
        "content": {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$x", "key": "👍"}},
    }
    out = evaluate(rules(), event, ONE_TO_ONE)
    assert out is not None and out.rule_id == ".m.rule.reaction" and not out.notify


def test_edit_is_suppressed() -> None:
    event = msg("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$x"}})
    out = evaluate(rules(), event, GROUP)
    assert out is not None and out.rule_id == ".m.rule.suppress_edits" and not out.notify


def test_encrypted_one_to_one_and_group() -> None:
    event = {
        "type": "m.room.encrypted",
        "sender": "@bob:hs",
        "room_id": ROOM,
        "content": {"algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "AAAA"},
    }
    out = evaluate(rules(), event, ONE_TO_ONE)
    assert out is not None and out.rule_id == ".m.rule.encrypted_room_one_to_one"
    assert out.notify and out.sound == "default" and not out.highlight
    out = evaluate(rules(), event, GROUP)
    assert out is not None and out.rule_id == ".m.rule.encrypted" and out.sound is None


def test_one_to_one_message_call_invite_tombstone() -> None:
    out = evaluate(rules(), msg("hi"), ONE_TO_ONE)
    assert out is not None and out.rule_id == ".m.rule.room_one_to_one" and out.sound == "default"
    call = {"type": "m.call.invite", "sender": "@bob:hs", "room_id": ROOM, "content": {}}
    assert evaluate(rules(), call, GROUP).sound == "ring"  # type: ignore[union-attr]
    invite = {
        "type": "m.room.member",
        "sender": "@bob:hs",
        "state_key": ME,
        "content": {"membership": "invite"},
    }
    assert evaluate(rules(), invite, GROUP).rule_id == ".m.rule.invite_for_me"  # type: ignore[union-attr]
    other_invite = {**invite, "state_key": "@carol:hs"}
    out = evaluate(rules(), other_invite, GROUP)
    assert out is not None and out.rule_id == ".m.rule.member_event" and not out.notify
    tomb = {"type": "m.room.tombstone", "sender": "@bob:hs", "state_key": "", "content": {}}
    assert evaluate(rules(), tomb, GROUP).highlight  # type: ignore[union-attr]
    not_state = {k: v for k, v in tomb.items() if k != "state_key"}
    assert evaluate(rules(), not_state, GROUP) is None


def test_own_events_never_notify() -> None:
    assert evaluate(rules(), {**msg("hi"), "sender": ME}, ONE_TO_ONE) is None


def test_master_and_user_rules_order() -> None:
    user = {
        "room": [PushRule("room", ROOM, ())],
        "sender": [PushRule("sender", "@bob:hs", ("notify", {"set_tweak": "highlight"}))],
        "content": [PushRule("content", "cake", ("notify",), pattern="cake*lie")],
    }
    rs = ordered(build_ruleset(ME, user, {}))
    assert evaluate(rs, msg("the cake is a lie"), GROUP).rule_id == "cake"  # type: ignore[union-attr]
    assert evaluate(rs, msg("hi"), GROUP).rule_id == ROOM  # type: ignore[union-attr]
    elsewhere = {**msg("hi"), "room_id": "!other:hs"}
    assert evaluate(rs, elsewhere, GROUP).rule_id == "@bob:hs"  # type: ignore[union-attr]
    muted = ordered(build_ruleset(ME, user, {".m.rule.master": DefaultOverride(enabled=True)}))
    out = evaluate(muted, msg("the cake is a lie"), GROUP)
    assert out is not None and out.rule_id == ".m.rule.master" and not out.notify
    changed = ordered(
        build_ruleset(
            ME,
            {},
            {
                ".m.rule.message": DefaultOverride(
                    actions=("notify", {"set_tweak": "sound", "value": "x"})
                )
            },
        )
    )
    assert evaluate(changed, msg("hi"), GROUP).sound == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("is_", "count", "expected"),
    [
        ("2", 2, True),
        ("==2", 3, False),
        ("<3", 2, True),
        (">3", 3, False),
        (">=3", 3, True),
        ("<=1", 2, False),
        ("x", 2, False),
        ("=2", 2, False),
    ],
)
def test_room_member_count(is_: str, count: int, expected: bool) -> None:
    ctx = replace(GROUP, member_count=count)
    assert condition_holds({"kind": "room_member_count", "is": is_}, {}, ctx) is expected


def test_property_conditions_and_unknown_kinds() -> None:
    create = {"type": "m.room.create", "content": {"m.federate": True, "n": 1}}
    assert event_property_is({"key": "content.m\\.federate", "value": True}, create)
    assert not event_property_is({"key": "content.m\\.federate", "value": "true"}, create)
    assert not event_property_is({"key": "content.n", "value": True}, create)
    assert not event_property_is({"key": "content.missing", "value": None}, create)
    aliases = {"content": {"alt_aliases": ["#a:hs", "#myroom:example.com", {"x": 1}]}}
    assert event_property_contains(
        {"key": "content.alt_aliases", "value": "#myroom:example.com"}, aliases
    )
    assert not event_property_contains(
        {"key": "content.alt_aliases", "value": ":example.com"}, aliases
    )
    assert not condition_holds({"kind": "future_kind"}, msg("x"), GROUP)
    assert not condition_holds(
        {"kind": "event_match", "key": "content.n", "pattern": "*"}, create, GROUP
    )
    assert tweaks(["notify", {"set_tweak": "highlight"}, {"set_tweak": "sound", "value": "a"}]) == {
        "highlight": True,
        "sound": "a",
    }
