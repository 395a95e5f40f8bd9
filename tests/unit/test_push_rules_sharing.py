"""Default push rules are built per user (rules.py ``build_ruleset``), and a server caches
one ruleset per user it evaluates: rules that do not name the user are one shared object,
so that cache grows by the few user-specific rules only."""

from __future__ import annotations

from homeserver.push.rules import build_ruleset, ordered


def test_rules_not_naming_the_user_are_shared_and_the_others_name_each_user() -> None:
    alice = ordered(build_ruleset("@alice:example.org", {}, {}))
    bob = ordered(build_ruleset("@bob:example.org", {}, {}))
    assert [r.rule_id for r in alice] == [r.rule_id for r in bob]
    shared = [a for a, b in zip(alice, bob, strict=True) if a is b]
    own = [(a, b) for a, b in zip(alice, bob, strict=True) if a is not b]
    # Most default rules are shared; the ones naming the user are not, and carry each id.
    assert len(shared) > len(own) > 0
    for a, b in own:
        assert "@alice:example.org" in str(a.conditions)
        assert "@bob:example.org" in str(b.conditions)
        assert "@bob:example.org" not in str(a.conditions)
    for rule in shared:
        assert "example.org" not in str(rule.conditions)
    # The placeholder never leaks into a built rule.
    assert all("[the user's Matrix ID]" not in str(r.conditions) for r in alice)
