"""Issue 3 review: behaviours the spec names that other modules did not pin down.

createRoom's parameters and event order, knocks seen by members, /messages with
from/to/limit/filter, /context with a filter, redaction per room version, history
visibility as a table over its four values on every reading endpoint, and unread
counts that follow edited push rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


async def state(api: Api, user: User, room: str, etype: str, key: str = "") -> Any:
    return await ok(await api.get(f"/rooms/{room}/state/{etype}/{key}", token=user.access_token))


async def test_create_room_every_parameter_in_spec_order(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    body = await ok(
        await api.post(
            "/createRoom",
            {
                "preset": "private_chat",
                "visibility": "public",
                "room_alias_name": "every",
                "name": "The name",
                "topic": "The topic",
                "invite": [bob.user_id],
                "is_direct": True,
                "creation_content": {
                    "type": "m.space",
                    "m.federate": False,
                    "room_version": "1",  # the server overwrites this
                },
                "initial_state": [
                    {
                        "type": "m.room.history_visibility",
                        "content": {"history_visibility": "world_readable"},
                    },
                    {"type": "m.room.topic", "content": {"topic": "overridden by topic"}},
                    {"type": "org.example.s", "state_key": "k", "content": {"v": 1}},
                ],
                "power_level_content_override": {
                    "events_default": 10,
                    "users": {carol.user_id: 50},
                },
            },
            token=alice.access_token,
        )
    )
    room = body["room_id"]
    create = await state(api, alice, room, "m.room.create")
    assert create["room_version"] == "12"  # the default
    assert create["type"] == "m.space" and create["m.federate"] is False
    assert "creator" not in create
    pl = await state(api, alice, room, "m.room.power_levels")
    assert pl["events_default"] == 10 and pl["users"] == {carol.user_id: 50}
    assert pl["events"]["m.room.tombstone"] > pl.get("state_default", 50)  # v12 rule
    assert await state(api, alice, room, "m.room.canonical_alias") == {"alias": "#every:localhost"}
    assert await state(api, alice, room, "m.room.join_rules") == {"join_rule": "invite"}
    assert await state(api, alice, room, "m.room.guest_access") == {"guest_access": "can_join"}
    # initial_state beats the preset; name and topic beat initial_state.
    hv = await state(api, alice, room, "m.room.history_visibility")
    assert hv == {"history_visibility": "world_readable"}
    assert await state(api, alice, room, "m.room.topic") == {
        "topic": "The topic",
        "m.topic": {"m.text": [{"body": "The topic", "mimetype": "text/plain"}]},
    }
    assert await state(api, alice, room, "m.room.name") == {"name": "The name"}
    assert await state(api, alice, room, "org.example.s", "k") == {"v": 1}
    invite = await state(api, alice, room, "m.room.member", bob.user_id)
    assert invite["membership"] == "invite" and invite["is_direct"] is True
    # The order of the spec's createRoom steps 1-8.
    r = await ok(
        await api.get(
            f"/rooms/{room}/messages", token=alice.access_token, params={"dir": "f", "limit": "50"}
        )
    )
    order = [(e["type"], e.get("state_key")) for e in r["chunk"]]
    assert order == [
        ("m.room.create", ""),
        ("m.room.member", alice.user_id),
        ("m.room.power_levels", ""),
        ("m.room.canonical_alias", ""),
        ("m.room.join_rules", ""),
        # the preset's history visibility is left out: initial_state sets it
        ("m.room.guest_access", ""),
        ("m.room.history_visibility", ""),
        ("m.room.topic", ""),
        ("org.example.s", "k"),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", bob.user_id),
    ]
    # visibility=public publishes the room.
    assert (await ok(await api.get(f"/directory/list/room/{room}"))) == {"visibility": "public"}
    listed = await ok(await api.get("/publicRooms"))
    assert [c["room_id"] for c in listed["chunk"]] == [room]
    assert listed["chunk"][0]["room_type"] == "m.space"


@pytest.mark.parametrize(
    ("body", "join_rule", "guest_access"),
    [
        ({"visibility": "public"}, "public", "forbidden"),  # preset follows visibility
        ({}, "invite", "can_join"),
        ({"preset": "trusted_private_chat"}, "invite", "can_join"),
    ],
)
async def test_preset_defaults(
    api: Api, body: dict[str, Any], join_rule: str, guest_access: str
) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice, **body)
    assert await state(api, alice, room, "m.room.join_rules") == {"join_rule": join_rule}
    r = await api.get(f"/rooms/{room}/state/m.room.guest_access/", token=alice.access_token)
    if guest_access == "forbidden":
        assert r.status == 404  # no event: the default, forbidden
    else:
        assert r.body == {"guest_access": guest_access}
    hv = await state(api, alice, room, "m.room.history_visibility")
    assert hv == {"history_visibility": "shared"}


async def test_members_see_the_knock_in_sync_and_approve_it(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(
        api,
        alice,
        initial_state=[{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}],
    )
    a0 = await sync(api, alice)
    await ok(await api.post(f"/knock/{room}", {"reason": "please"}, token=bob.access_token))
    a1 = await sync(api, alice, a0["next_batch"])
    knocks = [
        e
        for e in a1["rooms"]["join"][room]["timeline"]["events"]
        if e["type"] == "m.room.member" and e["state_key"] == bob.user_id
    ]
    assert [k["content"]["membership"] for k in knocks] == ["knock"]
    assert knocks[0]["content"]["reason"] == "please"
    b0 = await sync(api, bob)
    assert room in b0["rooms"]["knock"]
    await ok(
        await api.post(f"/rooms/{room}/invite", {"user_id": bob.user_id}, token=alice.access_token)
    )
    b1 = await sync(api, bob, b0["next_batch"])
    assert room in b1["rooms"]["invite"] and room not in b1["rooms"].get("knock", {})
    await ok(await api.post(f"/join/{room}", {}, token=bob.access_token))
    joined = await ok(await api.get(f"/rooms/{room}/joined_members", token=alice.access_token))
    assert set(joined["joined"]) == {alice.user_id, bob.user_id}
    # Knocking where the join rule is not knock is refused.
    closed = await create_room(api, alice)
    r = await api.post(f"/knock/{closed}", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"


async def _chatty_room(api: Api) -> tuple[User, User, User, str, list[str], list[str]]:
    """alice, bob, carol (silent) in a room; six messages m0..m5 alternating alice/bob,
    with sync tokens taken before m0, after m2 and after m5."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(api, alice, preset="public_chat")
    for u in (bob, carol):
        await ok(await api.post(f"/join/{room}", {}, token=u.access_token))
    tokens = [(await sync(api, alice))["next_batch"]]
    ids = []
    for i in range(6):
        ids.append(await send_text(api, (alice, bob)[i % 2], room, f"m{i}", f"t{i}"))
        if i in (2, 5):
            tokens.append((await sync(api, alice))["next_batch"])
    return alice, bob, carol, room, ids, tokens


def _bodies(chunk: list[dict[str, Any]]) -> list[str]:
    return [e["content"]["body"] for e in chunk if e["type"] == "m.room.message"]


async def test_messages_from_to_limit_and_filter(api: Api) -> None:
    alice, bob, carol, room, _, (t0, t2, t5) = await _chatty_room(api)
    tok = alice.access_token

    async def page(**params: str) -> Any:
        return await ok(await api.get(f"/rooms/{room}/messages", token=tok, params=params))

    # Backwards from the newest, in pages of 2, following `end`.
    p1 = await page(dir="b", limit="2")
    assert _bodies(p1["chunk"]) == ["m5", "m4"]
    p2 = await page(dir="b", limit="2", **{"from": p1["end"]})
    assert _bodies(p2["chunk"]) == ["m3", "m2"] and p2["start"] == p1["end"]
    # Reaching the start of the room: the last non-empty page still has `end` (Sytest and
    # Synapse), and the empty page after it has none.
    rest = await page(dir="b", limit="100", **{"from": p2["end"]})
    assert rest["chunk"] and rest["chunk"][-1]["type"] == "m.room.create" and "end" in rest
    last = await page(dir="b", limit="100", **{"from": rest["end"]})
    assert last["chunk"] == [] and "end" not in last
    # Forwards from a sync token, bounded by `to`.
    f = await page(dir="f", limit="10", to=t2, **{"from": t0})
    assert _bodies(f["chunk"]) == ["m0", "m1", "m2"]
    b = await page(dir="b", limit="10", to=t2, **{"from": t5})
    assert _bodies(b["chunk"]) == ["m5", "m4", "m3"]
    f2 = await page(dir="f", limit="2", **{"from": t0})
    assert _bodies(f2["chunk"]) == ["m0", "m1"]
    f3 = await page(dir="f", limit="10", **{"from": f2["end"]})
    assert _bodies(f3["chunk"]) == ["m2", "m3", "m4", "m5"]
    # A filter by sender and type.
    only_bob = json.dumps({"senders": [bob.user_id], "types": ["m.room.message"]})
    r = await page(dir="b", limit="10", filter=only_bob, to=t0)
    assert _bodies(r["chunk"]) == ["m5", "m3", "m1"]
    assert {e["sender"] for e in r["chunk"]} == {bob.user_id}
    not_bob = json.dumps({"not_senders": [bob.user_id], "types": ["m.room.message"]})
    r = await page(dir="b", limit="10", filter=not_bob, to=t0)
    assert _bodies(r["chunk"]) == ["m4", "m2", "m0"]
    # lazy_load_members: the state chunk holds the senders' member events, not carol's.
    lazy = json.dumps({"lazy_load_members": True, "senders": [bob.user_id]})
    r = await page(dir="b", limit="2", filter=lazy)
    assert {e["sender"] for e in r["chunk"]} == {bob.user_id}
    members = {e["state_key"] for e in r["state"] if e["type"] == "m.room.member"}
    assert members == {bob.user_id}
    r = await page(dir="b", limit="2")
    assert "state" not in r or r["state"] == []
    assert carol  # joined, silent: never part of a lazy state chunk above


async def test_context_with_filter(api: Api) -> None:
    alice, bob, carol, room, ids, _ = await _chatty_room(api)
    tok = alice.access_token
    r = await ok(await api.get(f"/rooms/{room}/context/{ids[3]}", token=tok, params={"limit": "4"}))
    assert r["event"]["event_id"] == ids[3]
    assert _bodies(r["events_before"]) == ["m2", "m1"]
    assert _bodies(r["events_after"]) == ["m4", "m5"]
    members = {e["state_key"] for e in r["state"] if e["type"] == "m.room.member"}
    assert members == {alice.user_id, bob.user_id, carol.user_id}
    only_alice = json.dumps(
        {"senders": [alice.user_id], "types": ["m.room.message"], "lazy_load_members": True}
    )
    r = await ok(
        await api.get(
            f"/rooms/{room}/context/{ids[3]}",
            token=tok,
            params={"limit": "4", "filter": only_alice},
        )
    )
    assert _bodies(r["events_before"]) == ["m2", "m0"]
    assert _bodies(r["events_after"]) == ["m4"]
    members = {e["state_key"] for e in r["state"] if e["type"] == "m.room.member"}
    # The event itself (bob's) and the filtered events (alice's) need their senders.
    assert members == {alice.user_id, bob.user_id}
    bad = await api.get(f"/rooms/{room}/context/{ids[3]}", token=tok, params={"filter": "{nope"})
    assert bad.status == 400


@pytest.mark.parametrize("version", ["10", "11", "12"])
async def test_redaction_follows_the_room_version(api: Api, version: str) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice, room_version=version)
    tok = alice.access_token
    msg = await send_text(api, alice, room, "secret", "m1")
    r1 = (await ok(await api.put(f"/rooms/{room}/redact/{msg}/r1", {"reason": "x"}, token=tok)))[
        "event_id"
    ]
    gone = await ok(await api.get(f"/rooms/{room}/event/{msg}", token=tok))
    assert gone["content"] == {}
    assert gone["unsigned"]["redacted_because"]["event_id"] == r1
    redaction = await ok(await api.get(f"/rooms/{room}/event/{r1}", token=tok))
    if version == "10":
        assert redaction["redacts"] == msg and "redacts" not in redaction["content"]
    else:
        assert redaction["content"]["redacts"] == msg
    # Redacting the redaction: v11+ keep content.redacts (spec, room version 11).
    await ok(await api.put(f"/rooms/{room}/redact/{r1}/r2", {}, token=tok))
    redacted = await ok(await api.get(f"/rooms/{room}/event/{r1}", token=tok))
    assert redacted["content"] == ({} if version == "10" else {"redacts": msg})
    # Power levels: v11+ keep `invite` through a redaction, v10 drops it.
    pl = await state(api, alice, room, "m.room.power_levels")
    pl["invite"] = 42
    pl_id = (await ok(await api.put(f"/rooms/{room}/state/m.room.power_levels/", pl, token=tok)))[
        "event_id"
    ]
    await ok(await api.put(f"/rooms/{room}/redact/{pl_id}/r3", {}, token=tok))
    after = await state(api, alice, room, "m.room.power_levels")
    assert after.get("invite") == (None if version == "10" else 42)
    assert "users" in after


# History visibility: what bob (invited, then joined, then left) and eve (never a
# member) may read. Events: `before` (bob not yet invited), `invited` (bob invited),
# `joined` (bob joined), `after_leave` (bob left).
VISIBLE_TO_BOB = {
    "world_readable": {"before", "invited", "joined", "after_leave"},
    "shared": {"before", "invited", "joined"},
    "invited": {"invited", "joined"},
    "joined": {"joined"},
}


@pytest.mark.parametrize("visibility", sorted(VISIBLE_TO_BOB))
async def test_history_visibility_table(api: Api, visibility: str) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await create_room(
        api,
        alice,
        preset="public_chat",
        initial_state=[
            {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}
        ],
    )
    a = alice.access_token
    ids = {"before": await send_text(api, alice, room, "before", "h0")}
    await ok(await api.post(f"/rooms/{room}/invite", {"user_id": bob.user_id}, token=a))
    ids["invited"] = await send_text(api, alice, room, "invited", "h1")
    await ok(await api.post(f"/join/{room}", {}, token=bob.access_token))
    ids["joined"] = await send_text(api, alice, room, "joined", "h2")
    # /sync while joined: the timeline holds exactly what bob may see (so far).
    s = await sync(api, bob, filter=json.dumps({"room": {"timeline": {"limit": 50}}}))
    seen = set(_bodies(s["rooms"]["join"][room]["timeline"]["events"]))
    assert seen == VISIBLE_TO_BOB[visibility] - {"after_leave"}
    await ok(await api.post(f"/rooms/{room}/leave", {}, token=bob.access_token))
    ids["after_leave"] = await send_text(api, alice, room, "after_leave", "h3")
    expected = VISIBLE_TO_BOB[visibility]

    msgs = await ok(
        await api.get(
            f"/rooms/{room}/messages", token=bob.access_token, params={"dir": "b", "limit": "50"}
        )
    )
    assert set(_bodies(msgs["chunk"])) == expected
    for name, event_id in ids.items():
        r = await api.get(f"/rooms/{room}/event/{event_id}", token=bob.access_token)
        assert (r.status == 200) == (name in expected), (name, r.status)
        if r.status != 200:
            assert r.status == 404 and r.errcode == "M_NOT_FOUND"
        c = await api.get(f"/rooms/{room}/context/{event_id}", token=bob.access_token)
        assert (c.status == 200) == (name in expected), (name, c.status)
        if c.status == 200:
            around = c.body["events_before"] + [c.body["event"]] + c.body["events_after"]
            assert set(_bodies(around)) <= expected

    # eve, never a member: only a world_readable room is open to her.
    r = await api.get(f"/rooms/{room}/messages", token=eve.access_token, params={"dir": "b"})
    e = await api.get(f"/rooms/{room}/event/{ids['joined']}", token=eve.access_token)
    c = await api.get(f"/rooms/{room}/context/{ids['joined']}", token=eve.access_token)
    if visibility == "world_readable":
        assert r.status == 200 and set(_bodies(r.body["chunk"])) == expected
        assert e.status == 200 and c.status == 200
    else:
        assert r.status == 403 and r.errcode == "M_FORBIDDEN"
        assert e.status == 404 or e.status == 403
        assert c.status in (403, 404)


def _counts(body: dict[str, Any], room: str) -> dict[str, int]:
    c: dict[str, int] = body["rooms"]["join"][room]["unread_notifications"]
    return c


async def test_unread_counts_follow_edited_push_rules(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")  # three members: .m.rule.room_one_to_one does not apply
    room = await create_room(api, alice, preset="public_chat")
    for u in (bob, carol):
        await ok(await api.post(f"/join/{room}", {}, token=u.access_token))
    b = bob.access_token
    rule = "/pushrules/global/underride/.m.rule.message"
    await ok(await api.put(f"{rule}/enabled", {"enabled": False}, token=b))
    b0 = await sync(api, bob)
    await send_text(api, alice, room, "quiet", "p1")
    b1 = await sync(api, bob, b0["next_batch"])
    assert _counts(b1, room) == {"notification_count": 0, "highlight_count": 0}
    assert (await ok(await api.get("/notifications", token=b)))["notifications"] == []
    # Enabled again, and made to highlight: the next message counts both ways.
    await ok(await api.put(f"{rule}/enabled", {"enabled": True}, token=b))
    actions = {"actions": ["notify", {"set_tweak": "highlight"}]}
    await ok(await api.put(f"{rule}/actions", actions, token=b))
    await send_text(api, alice, room, "loud", "p2")
    b2 = await sync(api, bob, b1["next_batch"])
    assert _counts(b2, room) == {"notification_count": 1, "highlight_count": 1}
    notes = (await ok(await api.get("/notifications", token=b)))["notifications"]
    assert [n["event"]["content"]["body"] for n in notes] == ["loud"]
    # A user rule that silences one sender (override, dont_notify) wins over the default.
    quiet_alice = {
        "actions": [],
        "conditions": [{"kind": "event_match", "key": "sender", "pattern": alice.user_id}],
    }
    await ok(await api.put("/pushrules/global/override/quiet_alice", quiet_alice, token=b))
    await send_text(api, alice, room, "muted", "p3")
    await send_text(api, carol, room, "from carol", "p4")
    b3 = await sync(api, bob, b2["next_batch"])
    assert _counts(b3, room) == {"notification_count": 2, "highlight_count": 2}
    # The master rule silences everything.
    await ok(
        await api.put(
            "/pushrules/global/override/.m.rule.master/enabled", {"enabled": True}, token=b
        )
    )
    await send_text(api, carol, room, "under master", "p5")
    b4 = await sync(api, bob, b3["next_batch"])
    assert _counts(b4, room) == {"notification_count": 2, "highlight_count": 2}


async def test_avatar_change_updates_member_events(api: Api) -> None:
    alice = await api.register("alice")
    rooms = [await create_room(api, alice) for _ in range(2)]
    url = "mxc://localhost/abcdef"
    await ok(
        await api.put(
            f"/profile/{alice.user_id}/avatar_url", {"avatar_url": url}, token=alice.access_token
        )
    )
    for room in rooms:
        member = await state(api, alice, room, "m.room.member", alice.user_id)
        assert member["avatar_url"] == url and member["membership"] == "join"
