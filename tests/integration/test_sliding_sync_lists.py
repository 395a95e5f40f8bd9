"""Simplified sliding sync (MSC4186): lists, ranges, recency order, filters, room bodies,
required_state, subscriptions, positions."""

from __future__ import annotations

from tests.conftest import RestartFn, RunningServer
from tests.helpers import Api
from tests.integration.sliding_helpers import all_list, bodies, sliding, sliding_ok
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def test_advertised_in_versions(api: Api) -> None:
    r = await api.get("/_matrix/client/versions")
    assert r.body["unstable_features"]["org.matrix.simplified_msc3575"] is True


async def test_lists_sorted_by_recency_with_ranges_and_counts(api: Api) -> None:
    alice = await api.register("alice")
    rooms = [await create_room(api, alice, name=f"R{i}") for i in range(4)]
    # Bump room 1 last: it becomes the most recent.
    await send_text(api, alice, rooms[1], "late", "t1")
    body = {"lists": {"all": all_list(timeline_limit=1, end=1)}}
    out = await sliding_ok(api, alice, body)
    assert out["lists"]["all"]["count"] == 4
    # Only the rooms of range [0, 1] are sent: room 1 (bumped), then the newest created.
    assert set(out["rooms"]) == {rooms[1], rooms[3]}
    r1 = out["rooms"][rooms[1]]
    assert r1["initial"] is True
    assert r1["name"] == "R1"
    assert bodies(r1["timeline"]) == ["late"]
    assert r1["limited"] is True
    assert r1["joined_count"] == 1 and r1["invited_count"] == 0
    assert r1["notification_count"] == 0 and r1["highlight_count"] == 0
    assert r1["bump_stamp"] > out["rooms"][rooms[3]]["bump_stamp"]
    assert isinstance(r1["prev_batch"], str)
    # The prev_batch pages back with /messages.
    back = await api.get(
        f"/rooms/{rooms[1]}/messages",
        token=alice.access_token,
        params={"from": r1["prev_batch"], "dir": "b", "limit": "50"},
    )
    assert back.status == 200
    assert any(e["type"] == "m.room.create" for e in back.body["chunk"])


async def test_incremental_sends_only_what_changed(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    quiet = await create_room(api, alice, preset="public_chat")
    for r in (room, quiet):
        assert (await api.post(f"/join/{r}", {}, token=bob.access_token)).status == 200
    body = {
        "lists": {"all": all_list(timeline_limit=10, required_state=[["m.room.member", "$LAZY"]])}
    }
    first = await sliding_ok(api, bob, body)
    assert set(first["rooms"]) == {room, quiet}
    e1 = await send_text(api, alice, room, "one", "a1")
    second = await sliding_ok(api, bob, body, first["pos"])
    assert set(second["rooms"]) == {room}
    body_room = second["rooms"][room]
    assert "initial" not in body_room
    assert [e["event_id"] for e in body_room["timeline"]] == [e1]
    assert body_room["num_live"] == 1
    assert body_room["limited"] is False
    # $LAZY: the sender's membership comes with their message.
    assert [(s["type"], s["state_key"]) for s in body_room["required_state"]] == [
        ("m.room.member", alice.user_id)
    ]
    # Nothing new: an empty answer keeps the position.
    third = await sliding_ok(api, bob, body, second["pos"])
    assert third["rooms"] == {}
    assert third["pos"] == second["pos"]


async def test_required_state_wildcards_and_me(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice, name="Named", topic="About")
    rs = [["m.room.name", ""], ["m.room.member", "$ME"]]
    out = await sliding_ok(api, alice, {"lists": {"a": all_list(required_state=rs)}})
    got = {(s["type"], s["state_key"]) for s in out["rooms"][room]["required_state"]}
    assert got == {("m.room.name", ""), ("m.room.member", alice.user_id)}
    rs = [["*", "*"]]
    out = await sliding_ok(api, alice, {"lists": {"a": all_list(required_state=rs)}})
    types = {s["type"] for s in out["rooms"][room]["required_state"]}
    assert {"m.room.create", "m.room.name", "m.room.topic", "m.room.power_levels"} <= types
    rs = [["m.room.topic", "*"]]
    out = await sliding_ok(api, alice, {"lists": {"a": all_list(required_state=rs)}})
    assert [s["type"] for s in out["rooms"][room]["required_state"]] == ["m.room.topic"]


async def test_changing_required_state_resends_it(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice, name="N", topic="T")
    first = await sliding_ok(
        api, alice, {"lists": {"a": all_list(required_state=[["m.room.name", ""]])}}
    )
    again = await sliding_ok(
        api,
        alice,
        {"lists": {"a": all_list(required_state=[["m.room.topic", ""]])}},
        first["pos"],
    )
    assert [s["type"] for s in again["rooms"][room]["required_state"]] == ["m.room.topic"]


async def test_heroes_when_no_name(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await api.put(
        f"/profile/{bob.user_id}/displayname", {"displayname": "Bobby"}, token=bob.access_token
    )
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    out = await sliding_ok(api, alice, {"lists": {"a": all_list()}})
    body = out["rooms"][room]
    assert "name" not in body
    assert body["heroes"] == [{"user_id": bob.user_id, "displayname": "Bobby"}]
    assert body["joined_count"] == 2


async def test_filters(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    plain = await create_room(api, alice)
    enc = await create_room(
        api,
        alice,
        initial_state=[
            {
                "type": "m.room.encryption",
                "state_key": "",
                "content": {"algorithm": "m.megolm.v1.aes-sha2"},
            }
        ],
    )
    space = await create_room(api, alice, creation_content={"type": "m.space"})
    child = await create_room(api, alice)
    r = await api.put(
        f"/rooms/{space}/state/m.space.child/{child}",
        {"via": ["localhost"]},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    dm = await create_room(api, bob, is_direct=True, invite=[alice.user_id])
    lists = {
        "enc": all_list(is_encrypted=True),
        "clear": all_list(is_encrypted=False),
        "invites": all_list(is_invite=True),
        "dms": all_list(is_dm=True),
        "spaces": all_list(room_types=["m.space"]),
        "not_spaces": all_list(not_room_types=["m.space"]),
        "plain_type": all_list(room_types=[None]),
        "in_space": all_list(spaces=[space]),
    }
    out = await sliding_ok(api, alice, {"lists": lists})

    def ids(name: str) -> set[str]:
        # Every room of these small lists is in range, so the count is the set's size.
        assert out["lists"][name]["count"] == len(expected[name]), name
        return expected[name]

    expected = {
        "enc": {enc},
        "clear": {plain, space, child, dm},
        "invites": {dm},
        "dms": {dm},
        "spaces": {space},
        "not_spaces": {plain, enc, child, dm},
        "plain_type": {plain, enc, child, dm},
        "in_space": {child},
    }
    for name in lists:
        ids(name)
    invite = out["rooms"][dm]
    assert invite["is_dm"] is True
    assert any(e["type"] == "m.room.create" for e in invite["invite_state"])
    assert "timeline" not in invite
    # m.direct account data makes a joined room a DM too.
    r = await api.put(
        f"/user/{alice.user_id}/account_data/m.direct",
        {bob.user_id: [plain]},
        token=alice.access_token,
    )
    assert r.status == 200
    out = await sliding_ok(api, alice, {"lists": {"dms": all_list(is_dm=True)}})
    assert out["lists"]["dms"]["count"] == 2


async def test_room_subscriptions_are_sticky(api: Api) -> None:
    alice = await api.register("alice")
    a = await create_room(api, alice)
    b = await create_room(api, alice)
    first = await sliding_ok(
        api, alice, {"room_subscriptions": {a: {"timeline_limit": 2, "required_state": []}}}
    )
    assert set(first["rooms"]) == {a}
    await send_text(api, alice, b, "elsewhere", "x1")
    msg = await send_text(api, alice, a, "here", "x2")
    # Not repeated in the request (as matrix-js-sdk does): the subscription holds.
    second = await sliding_ok(api, alice, {}, first["pos"])
    assert set(second["rooms"]) == {a}
    assert [e["event_id"] for e in second["rooms"][a]["timeline"]] == [msg]
    third = await sliding_ok(api, alice, {"unsubscribe_rooms": [a]}, second["pos"])
    await send_text(api, alice, a, "unheard", "x3")
    fourth = await sliding_ok(api, alice, {}, third["pos"])
    assert fourth["rooms"] == {}


async def test_unknown_pos_and_bad_bodies(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    first = await sliding_ok(api, alice, {"lists": {"a": all_list()}})
    for pos in ("999999", "nonsense", "-1"):
        r = await sliding(api, alice, {}, pos)
        assert (r.status, r.errcode) == (400, "M_UNKNOWN_POS"), pos
    # A position is only valid for its own user and connection.
    r = await sliding(api, bob, {}, first["pos"])
    assert (r.status, r.errcode) == (400, "M_UNKNOWN_POS")
    r = await sliding(api, alice, {"conn_id": "other"}, first["pos"])
    assert (r.status, r.errcode) == (400, "M_UNKNOWN_POS")
    bad = [
        {"lists": []},
        {"lists": {"a": {"ranges": [[5, 1]]}}},
        {"lists": {"a": {"ranges": [[0, "x"]]}}},
        {"lists": {"a": {"timeline_limit": -1}}},
        {"lists": {"a": {"required_state": [["only-one"]]}}},
        {"lists": {"a": {"filters": {"is_dm": "yes"}}}},
        {"room_subscriptions": {"not-a-room": {}}},
        {"extensions": {"to_device": {"enabled": True, "since": "abc"}}},
        {"conn_id": 5},
    ]
    for body in bad:
        r = await sliding(api, alice, body)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), body
    r = await api.post("/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", {"lists": {}})
    assert r.status == 401
    # Refused requests changed nothing: the position still answers.
    assert (await sliding(api, alice, {}, first["pos"])).status == 200


async def test_connection_survives_a_restart(
    server: RunningServer, restart_server: RestartFn
) -> None:
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        room = await create_room(api, alice)
        first = await sliding_ok(api, alice, {"lists": {"a": all_list()}})
    again = await restart_server(server)
    async with Api(again.client_url) as api:
        msg = await send_text(api, alice, room, "after restart", "r1")
        out = await sliding_ok(api, alice, {"lists": {"a": all_list()}}, first["pos"])
        assert [e["event_id"] for e in out["rooms"][room]["timeline"]] == [msg]
        assert "initial" not in out["rooms"][room]


async def test_left_room_is_sent_with_the_leave(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    body = {"lists": {"a": all_list()}}
    first = await sliding_ok(api, bob, body)
    assert (await api.post(f"/rooms/{room}/leave", {}, token=bob.access_token)).status == 200
    await send_text(api, alice, room, "after bob left", "l1")
    out = await sliding_ok(api, bob, body, first["pos"])
    timeline = out["rooms"][room]["timeline"]
    assert timeline[-1]["type"] == "m.room.member"
    assert timeline[-1]["content"]["membership"] == "leave"
    assert "after bob left" not in bodies(timeline)


async def test_a_subscription_with_a_longer_timeline_expands_it(api: Api) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice)
    sent = [await send_text(api, alice, room, f"m{i}", f"e{i}") for i in range(5)]
    body: dict[str, object] = {"lists": {"a": all_list(timeline_limit=1)}}
    first = await sliding_ok(api, alice, body)
    assert [e["event_id"] for e in first["rooms"][room]["timeline"]] == sent[-1:]
    # Opening the room: a subscription asks for more of its timeline than the list did.
    body["room_subscriptions"] = {room: {"timeline_limit": 3}}
    second = await sliding_ok(api, alice, body, first["pos"])
    assert room in second["rooms"], second
    opened = second["rooms"][room]
    assert opened["unstable_expanded_timeline"] is True
    assert [e["event_id"] for e in opened["timeline"]] == sent[-3:]
    assert opened["num_live"] == 0 and "initial" not in opened
    # Nothing more to expand afterwards.
    third = await sliding_ok(api, alice, body, second["pos"])
    assert third["rooms"] == {}


async def test_reading_elsewhere_resends_the_counts(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    body = {"lists": {"a": all_list()}}
    first = await sliding_ok(api, bob, body)
    msg = await send_text(api, alice, room, "ping", "p1")
    second = await sliding_ok(api, bob, body, first["pos"])
    assert second["rooms"][room]["notification_count"] == 1
    # Bob reads on another device: this connection hears the counts drop.
    r = await api.post(f"/rooms/{room}/receipt/m.read/{msg}", {}, token=bob.access_token)
    assert r.status == 200
    third = await sliding_ok(api, bob, body, second["pos"])
    assert third["rooms"][room]["notification_count"] == 0
    assert third["rooms"][room]["timeline"] == []


async def test_an_expired_connection_answers_unknown_pos(server: RunningServer) -> None:
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        first = await sliding_ok(api, alice, {"lists": {"a": all_list()}})
        # A week without use (as if): the connection is forgotten.
        await server.hs.db.execute("UPDATE sliding_sync_connections SET last_used_ts = 0")
        r = await sliding(api, alice, {}, first["pos"])
        assert (r.status, r.errcode) == (400, "M_UNKNOWN_POS")
        # Starting again works; another stale connection of the user is forgotten.
        other = await sliding_ok(api, alice, {"conn_id": "other"})
        await server.hs.db.execute(
            "UPDATE sliding_sync_connections SET last_used_ts = 0 WHERE conn_id = 'other'"
        )
        again = await sliding_ok(api, alice, {"lists": {"a": all_list()}})
        assert (await sliding(api, alice, {}, again["pos"])).status == 200
        left = await server.hs.db.fetchval("SELECT COUNT(*) FROM sliding_sync_connections")
        assert left == 1
        r = await sliding(api, alice, {"conn_id": "other"}, other["pos"])
        assert (r.status, r.errcode) == (400, "M_UNKNOWN_POS")
