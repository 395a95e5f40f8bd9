"""Push rules API over real HTTP: defaults, user rules, ordering, overrides, refusals."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api

G = "/pushrules/global"


async def test_default_ruleset(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.get("/pushrules/", token=alice.access_token)
    assert r.status == 200
    rs = r.body["global"]
    assert set(rs) == {"override", "content", "room", "sender", "underride"}
    assert [x["rule_id"] for x in rs["override"]] == [
        ".m.rule.master",
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.is_room_mention",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ]
    assert [x["rule_id"] for x in rs["underride"]] == [
        ".m.rule.call",
        ".m.rule.encrypted_room_one_to_one",
        ".m.rule.room_one_to_one",
        ".m.rule.message",
        ".m.rule.encrypted",
    ]
    assert rs["content"] == [] and rs["room"] == [] and rs["sender"] == []
    master = rs["override"][0]
    assert master == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "actions": [],
        "conditions": [],
    }
    mention = rs["override"][4]
    assert mention["conditions"] == [
        {
            "kind": "event_property_contains",
            "key": "content.m\\.mentions.user_ids",
            "value": alice.user_id,
        }
    ]
    invite = rs["override"][2]
    assert {"key": "state_key", "kind": "event_match", "pattern": alice.user_id} in invite[
        "conditions"
    ]
    r = await api.get(f"{G}/", token=alice.access_token)
    assert r.status == 200 and r.body == rs
    r = await api.get(f"{G}/override/.m.rule.master", token=alice.access_token)
    assert r.body == master
    r = await api.get("/pushrules/")
    assert r.status == 401


async def test_user_rules_ordering_and_changes(api: Api, server: RunningServer) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    ad = server.hs.userdata.account_data
    pos0 = await ad.current_position()
    r = await api.put(
        f"{G}/content/cake", {"pattern": "cake*lie", "actions": ["notify"]}, token=tok
    )
    assert r.status == 200 and r.body == {}
    r = await api.get(f"{G}/content/cake", token=tok)
    assert r.body == {
        "rule_id": "cake",
        "default": False,
        "enabled": True,
        "actions": ["notify"],
        "pattern": "cake*lie",
    }
    # /sync sees the change as m.push_rules account data.
    glob, _ = await ad.changes_since(alice.user_id, pos0, await ad.current_position())
    assert glob["m.push_rules"]["global"]["content"][0]["rule_id"] == "cake"

    cond = [{"kind": "event_match", "key": "content.body", "pattern": "x"}]
    for rid in ("a", "b"):
        r = await api.put(
            f"{G}/override/{rid}", {"actions": ["dont_notify"], "conditions": cond}, token=tok
        )
        assert r.status == 200
    r = await api.put(
        f"{G}/override/c", {"actions": [], "conditions": cond}, token=tok, params={"after": "a"}
    )
    assert r.status == 200
    r = await api.put(
        f"{G}/override/d", {"actions": []}, token=tok, params={"before": "b", "after": "a"}
    )
    assert r.status == 200
    r = await api.get(f"{G}/", token=tok)
    ids = [x["rule_id"] for x in r.body["override"]]
    # Master first; the newest rule without before/after is the most important user rule;
    # user rules rank above the other defaults.
    assert ids[:5] == [".m.rule.master", "d", "b", "a", "c"]
    assert ids[5] == ".m.rule.suppress_notices"
    b = r.body["override"][2]
    # dont_notify is kept as set (a no-op when evaluating), as clients read it back.
    assert b["actions"] == ["dont_notify"] and b["conditions"] == cond

    # Updating keeps the place; disable then update keeps the enabled state.
    r = await api.put(f"{G}/override/a/enabled", {"enabled": False}, token=tok)
    assert r.status == 200
    r = await api.put(f"{G}/override/a", {"actions": ["notify"]}, token=tok)
    r = await api.get(f"{G}/override/a", token=tok)
    assert r.body["enabled"] is False and r.body["actions"] == ["notify"]
    assert r.body["conditions"] == []
    r = await api.get(f"{G}/override/a/enabled", token=tok)
    assert r.body == {"enabled": False}
    r = await api.get(f"{G}/", token=tok)
    assert [x["rule_id"] for x in r.body["override"]][1:5] == ["d", "b", "a", "c"]

    # Room and sender rules.
    r = await api.put(f"{G}/room/!r:localhost", {"actions": []}, token=tok)
    assert r.status == 200
    r = await api.put(f"{G}/sender/@spam:localhost", {"actions": []}, token=tok)
    assert r.status == 200
    r = await api.get(f"{G}/sender/@spam:localhost", token=tok)
    assert r.body == {
        "rule_id": "@spam:localhost",
        "default": False,
        "enabled": True,
        "actions": [],
    }

    r = await api.delete(f"{G}/override/b", token=tok)
    assert r.status == 200
    r = await api.get(f"{G}/override/b", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.delete(f"{G}/override/b", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"

    # The evaluator's view follows every change.
    rules = await server.hs.push.rules_for_user(alice.user_id)
    assert [x.rule_id for x in rules][:5] == [
        ".m.rule.master",
        "d",
        "a",
        "c",
        ".m.rule.suppress_notices",
    ]


async def test_default_rule_overrides(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    tok = alice.access_token
    r = await api.put(f"{G}/override/.m.rule.master/enabled", {"enabled": True}, token=tok)
    assert r.status == 200
    r = await api.get(f"{G}/override/.m.rule.master/enabled", token=tok)
    assert r.body == {"enabled": True}
    new_actions = ["notify", {"set_tweak": "sound", "value": "bell"}]
    r = await api.put(f"{G}/underride/.m.rule.message/actions", {"actions": new_actions}, token=tok)
    assert r.status == 200
    r = await api.get(f"{G}/underride/.m.rule.message/actions", token=tok)
    assert r.body == {"actions": new_actions}
    r = await api.get(f"{G}/underride/.m.rule.message", token=tok)
    assert r.body["default"] is True and r.body["enabled"] is True
    # Overrides are per user.
    r = await api.get(f"{G}/underride/.m.rule.message/actions", token=bob.access_token)
    assert r.body == {"actions": ["notify"]}
    r = await api.get(f"{G}/override/.m.rule.master/enabled", token=bob.access_token)
    assert r.body == {"enabled": False}
    # Changing actions kept the enabled override.
    r = await api.put(f"{G}/override/.m.rule.master/actions", {"actions": []}, token=tok)
    r = await api.get(f"{G}/override/.m.rule.master", token=tok)
    assert r.body["enabled"] is True


async def test_refusals(api: Api) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    cases = [
        ("PUT", f"{G}/override/.mine", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{G}/override/a\\b", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{G}/bogus/x", {"actions": []}, 400, "M_INVALID_PARAM"),
        ("GET", f"{G}/bogus/x", None, 400, "M_INVALID_PARAM"),
        ("PUT", f"{G}/override/x", {}, 400, "M_BAD_JSON"),
        ("PUT", f"{G}/override/x", {"actions": ["explode"]}, 400, "M_BAD_JSON"),
        ("PUT", f"{G}/override/x", {"actions": [1]}, 400, "M_BAD_JSON"),
        ("PUT", f"{G}/override/x", {"actions": [], "conditions": [{}]}, 400, "M_BAD_JSON"),
        ("PUT", f"{G}/content/x", {"actions": []}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{G}/content/x", {"actions": [], "pattern": 3}, 400, "M_BAD_JSON"),
        ("DELETE", f"{G}/override/.m.rule.master", None, 400, "M_INVALID_PARAM"),
        ("DELETE", f"{G}/underride/.m.rule.message", None, 400, "M_INVALID_PARAM"),
        ("DELETE", f"{G}/room/nothing", None, 404, "M_NOT_FOUND"),
        ("GET", f"{G}/override/nothing", None, 404, "M_NOT_FOUND"),
        ("GET", f"{G}/override/nothing/enabled", None, 404, "M_NOT_FOUND"),
        ("GET", f"{G}/override/nothing/actions", None, 404, "M_NOT_FOUND"),
        ("PUT", f"{G}/override/nothing/enabled", {"enabled": True}, 404, "M_NOT_FOUND"),
        ("PUT", f"{G}/override/nothing/actions", {"actions": []}, 404, "M_NOT_FOUND"),
        ("PUT", f"{G}/override/.m.rule.master/enabled", {"enabled": "yes"}, 400, "M_BAD_JSON"),
        ("PUT", f"{G}/override/.m.rule.master/enabled", {}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{G}/override/.m.rule.master/actions", {"actions": "x"}, 400, "M_BAD_JSON"),
        # The default rule exists under its own kind only.
        ("GET", f"{G}/underride/.m.rule.master", None, 404, "M_NOT_FOUND"),
    ]
    for method, path, body, status, errcode in cases:
        r = await api.request(method, path, body, token=tok)
        assert (r.status, r.errcode) == (status, errcode), (method, path, r.body)
    r = await api.put(f"{G}/override/x", {"actions": []}, token=tok, params={"before": "nope"})
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    r = await api.put(
        f"{G}/override/x", {"actions": []}, token=tok, params={"after": ".m.rule.master"}
    )
    assert r.status == 400
    # Nothing above changed the ruleset.
    r = await api.get(f"{G}/", token=tok)
    assert all(rule["default"] for kind in r.body.values() for rule in kind)
    assert r.body["override"][0]["enabled"] is False


async def test_rules_of_one_kind(api: Api) -> None:
    """GET /pushrules/global/{kind}/ lists one kind's rules, in the ruleset's order."""
    alice = await api.register("alice")
    tok = alice.access_token
    r = await api.put(f"{G}/room/!r:example.org", {"actions": ["dont_notify"]}, token=tok)
    assert r.status == 200, r.body
    whole = (await api.get("/pushrules/", token=tok)).body["global"]
    for kind in ("override", "content", "room", "sender", "underride"):
        r = await api.get(f"{G}/{kind}/", token=tok)
        assert r.status == 200 and r.body == whole[kind]
    assert [x["rule_id"] for x in (await api.get(f"{G}/room/", token=tok)).body] == [
        "!r:example.org"
    ]
    r = await api.get(f"{G}/nonsense/", token=tok)
    assert r.status == 400
    assert (await api.get(f"{G}/room/")).status == 401


async def test_malformed_paths_are_400(api: Api) -> None:
    """Paths under /pushrules/ that name no scope, kind, rule id or attribute: 400
    (Sytest 61push/80torture), while /pushrules without the slash stays unknown (404)."""
    alice = await api.register("alice")
    tok = alice.access_token
    for path in ("/global/room/", "/", "/global", "/global/room", "/not_a_scope/room/#x:y"):
        r = await api.put(f"/pushrules{path}", {"actions": ["notify"]}, token=tok)
        assert r.status == 400, path
    for path in ("/global", "/global/room", "/not_a_scope/", "/global/nope/"):
        r = await api.get(f"/pushrules{path}", token=tok)
        assert r.status == 400, path
    r = await api.get(f"{G}/override/.m.rule.master/not_an_attr", token=tok)
    assert r.status == 400
    r = await api.get(f"{G}/override/not_a_rule_id", token=tok)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert (await api.get("/pushrules", token=tok)).status == 404
