"""Account data, room tags, filters and presence over real HTTP."""

from __future__ import annotations

from homeserver.app import RunningServer, start
from tests.helpers import Api

ROOM = "!room:localhost"


async def test_account_data_global_and_room(api: Api, server: RunningServer) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    base = f"/user/{alice.user_id}"
    r = await api.get(f"{base}/account_data/org.example.cfg", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    ad = server.hs.userdata.account_data
    assert await ad.current_position() == 0
    r = await api.put(f"{base}/account_data/org.example.cfg", {"a": 1}, token=tok)
    pos0 = await ad.current_position()
    assert pos0 == 1
    assert r.status == 200 and r.body == {}
    r = await api.get(f"{base}/account_data/org.example.cfg", token=tok)
    assert r.status == 200 and r.body == {"a": 1}
    r = await api.put(f"{base}/account_data/org.example.cfg", {"a": 2}, token=tok)
    r = await api.get(f"{base}/account_data/org.example.cfg", token=tok)
    assert r.body == {"a": 2}

    ignored = {"ignored_users": {"@spam:localhost": {}}}
    r = await api.put(f"{base}/account_data/m.ignored_user_list", ignored, token=tok)
    assert r.status == 200
    r = await api.put(f"{base}/rooms/{ROOM}/account_data/org.example.room", {"r": True}, token=tok)
    assert r.status == 200
    r = await api.get(f"{base}/rooms/{ROOM}/account_data/org.example.room", token=tok)
    assert r.body == {"r": True}
    # No fallback from room to global account data.
    r = await api.get(f"{base}/rooms/{ROOM}/account_data/org.example.cfg", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"

    pos1 = await ad.current_position()
    assert pos1 == pos0 + 3
    glob, rooms = await ad.changes_since(alice.user_id, pos0, pos1)
    assert glob == {"org.example.cfg": {"a": 2}, "m.ignored_user_list": ignored}
    assert rooms == {ROOM: {"org.example.room": {"r": True}}}
    glob, rooms = await ad.changes_since(alice.user_id, pos0 + 1, pos1)
    assert set(glob) == {"m.ignored_user_list"} and set(rooms) == {ROOM}
    assert await ad.changes_since(alice.user_id, pos1, pos1) == ({}, {})
    # An initial sync also gets the default push rules.
    glob, _ = await ad.changes_since(alice.user_id, 0, pos1)
    assert ".m.rule.master" in str(glob["m.push_rules"])


async def test_account_data_refusals(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    base = f"/user/{alice.user_id}"
    r = await api.put(f"{base}/account_data/x.y", {"a": 1}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get(f"{base}/account_data/x.y", token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.get(f"{base}/rooms/{ROOM}/tags", token=bob.access_token)
    assert r.status == 403
    r = await api.put(f"{base}/account_data/x.y", {"a": 1})
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    for t in ("m.fully_read", "m.push_rules"):
        r = await api.put(f"{base}/account_data/{t}", {"a": 1}, token=alice.access_token)
        assert r.status == 405 and r.errcode == "M_BAD_JSON", r.body
        r = await api.put(
            f"{base}/rooms/{ROOM}/account_data/{t}", {"a": 1}, token=alice.access_token
        )
        assert r.status == 405 and r.errcode == "M_BAD_JSON"
    r = await api.put(f"{base}/account_data/x.y", [1, 2], token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.put(f"{base}/account_data/x.y", data=b"{nope", token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_NOT_JSON"
    r = await api.put(f"{base}/rooms/notaroom/account_data/x.y", {}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    # m.push_rules is readable as normal account data.
    r = await api.get(f"{base}/account_data/m.push_rules", token=alice.access_token)
    assert r.status == 200 and r.body["global"]["override"][0]["rule_id"] == ".m.rule.master"
    r = await api.get(f"{base}/account_data/x.y", token=alice.access_token)
    assert r.status == 404


async def test_room_tags(api: Api, server: RunningServer) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    base = f"/user/{alice.user_id}/rooms/{ROOM}"
    r = await api.get(f"{base}/tags", token=tok)
    assert r.status == 200 and r.body == {"tags": {}}
    ad = server.hs.userdata.account_data
    pos0 = await ad.current_position()
    assert (await api.put(f"{base}/tags/m.favourite", {"order": 0.25}, token=tok)).status == 200
    assert (await api.put(f"{base}/tags/u.work", {}, token=tok)).status == 200
    r = await api.get(f"{base}/tags", token=tok)
    assert r.body == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    r = await api.get(f"{base}/account_data/m.tag", token=tok)
    assert r.body == {"tags": {"m.favourite": {"order": 0.25}, "u.work": {}}}
    assert (await api.delete(f"{base}/tags/m.favourite", token=tok)).status == 200
    assert (await api.delete(f"{base}/tags/never.set", token=tok)).status == 200
    r = await api.get(f"{base}/tags", token=tok)
    assert r.body == {"tags": {"u.work": {}}}
    _, rooms = await ad.changes_since(alice.user_id, pos0, await ad.current_position())
    assert rooms == {ROOM: {"m.tag": {"tags": {"u.work": {}}}}}
    r = await api.put(f"{base}/tags/bad", {"order": "first"}, token=tok)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"


async def test_filters(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    tok = alice.access_token
    base = f"/user/{alice.user_id}/filter"
    f = {
        "event_fields": ["type", "content.body"],
        "room": {
            "rooms": ["!a:localhost"],
            "timeline": {"limit": 10, "types": ["m.room.*"], "lazy_load_members": True},
            "state": {"lazy_load_members": True, "include_redundant_members": False},
            "include_leave": False,
        },
        "presence": {"not_types": ["*"]},
    }
    r = await api.post(base, f, token=tok)
    assert r.status == 200 and isinstance(r.body["filter_id"], str)
    fid = r.body["filter_id"]
    assert not fid.startswith("{")
    r = await api.get(f"{base}/{fid}", token=tok)
    assert r.status == 200 and r.body == f
    r = await api.get(f"{base}/999999", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.get(f"{base}/notanumber", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # Another user's filter id is not theirs to read.
    r = await api.get(f"/user/{bob.user_id}/filter/{fid}", token=bob.access_token)
    assert r.status == 404
    r = await api.get(f"{base}/{fid}", token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.post(base, {}, token=bob.access_token)
    assert r.status == 403
    bad = [
        ({"room": {"timeline": {"limit": "10"}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"types": "m.room.message"}}}, "M_BAD_JSON"),
        ({"room": "all"}, "M_BAD_JSON"),
        ({"event_fields": [1]}, "M_BAD_JSON"),
        ({"room": {"include_leave": "yes"}}, "M_BAD_JSON"),
        ({"room": {"state": {"lazy_load_members": 1}}}, "M_BAD_JSON"),
        ({"room": {"timeline": {"contains_url": "true"}}}, "M_BAD_JSON"),
        ({"event_format": "xml"}, "M_INVALID_PARAM"),
        ({"room": {"timeline": {"limit": -1}}}, "M_INVALID_PARAM"),
        ({"presence": {"senders": ["alice"]}}, "M_INVALID_PARAM"),
        ({"room": {"not_rooms": ["#alias:localhost"]}}, "M_INVALID_PARAM"),
    ]
    for body, errcode in bad:
        r = await api.post(base, body, token=tok)
        assert r.status == 400 and r.errcode == errcode, (body, r.body)


async def test_presence(api: Api, server: RunningServer) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    url = f"/presence/{alice.user_id}/status"
    r = await api.get(url, token=bob.access_token)
    assert r.status == 200 and r.body == {"presence": "offline"}
    r = await api.get("/presence/@nobody:localhost/status", token=bob.access_token)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    pres = server.hs.userdata.presence
    pos0 = await pres.current_position()
    r = await api.put(url, {"presence": "online", "status_msg": "lunch"}, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    r = await api.get(url, token=bob.access_token)
    assert r.body["presence"] == "online" and r.body["status_msg"] == "lunch"
    assert 0 <= r.body["last_active_ago"] < 10_000 and r.body["currently_active"] is True
    r = await api.put(url, {"presence": "online"}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"
    r = await api.put(url, {"presence": "busy"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.put(url, {"status_msg": "x"}, token=alice.access_token)
    assert r.status == 400
    r = await api.put(
        f"/presence/{bob.user_id}/status", {"presence": "unavailable"}, token=bob.access_token
    )
    pos1 = await pres.current_position()
    assert pos1 == pos0 + 2
    events = await pres.changes_since(pos0, pos1)
    assert [(e["sender"], e["content"]["presence"]) for e in events] == [
        (alice.user_id, "online"),
        (bob.user_id, "unavailable"),
    ]
    only_bob = await pres.changes_since(pos0, pos1, {bob.user_id})
    assert [(e["sender"], e["content"]["presence"]) for e in only_bob] == [
        (bob.user_id, "unavailable")
    ]
    assert await pres.changes_since(pos1, pos1) == []


async def test_user_data_survives_restart(make_server: object) -> None:
    first: RunningServer = await make_server()  # type: ignore[operator]
    async with Api(first.client_url) as api:
        alice = await api.register("alice")
        tok = alice.access_token
        await api.put(f"/user/{alice.user_id}/account_data/x.y", {"k": "v"}, token=tok)
        await api.put(f"/presence/{alice.user_id}/status", {"presence": "unavailable"}, token=tok)
        r = await api.post(f"/user/{alice.user_id}/filter", {"room": {}}, token=tok)
        fid = r.body["filter_id"]
        await api.put("/pushrules/global/room/!r:localhost", {"actions": []}, token=tok)
    pos_ad = await first.hs.userdata.account_data.current_position()
    pos_pr = await first.hs.userdata.presence.current_position()
    config = first.hs.config
    await first.stop()
    second = await start(config)
    try:
        assert await second.hs.userdata.account_data.current_position() == pos_ad
        assert await second.hs.userdata.presence.current_position() == pos_pr
        async with Api(second.client_url) as api:
            r = await api.get(f"/user/{alice.user_id}/account_data/x.y", token=tok)
            assert r.body == {"k": "v"}
            r = await api.get(f"/presence/{alice.user_id}/status", token=tok)
            assert r.body["presence"] == "unavailable"
            r = await api.get(f"/user/{alice.user_id}/filter/{fid}", token=tok)
            assert r.body == {"room": {}}
            r = await api.get("/pushrules/global/room/!r:localhost", token=tok)
            assert r.status == 200 and r.body["actions"] == []
            await api.put(f"/user/{alice.user_id}/account_data/x.z", {}, token=tok)
        assert await second.hs.userdata.account_data.current_position() == pos_ad + 1
    finally:
        await second.stop()


async def test_concurrent_tag_changes_all_land_and_wake_sync(
    api: Api, server: RunningServer
) -> None:
    import asyncio

    alice = await api.register("alice")
    woken: list[tuple[str, int]] = []
    server.hs.userdata.account_data.change_hooks.append(lambda u, p: woken.append((u, p)))
    base = f"/user/{alice.user_id}/rooms/{ROOM}/tags"
    replies = await asyncio.gather(
        *(api.put(f"{base}/t{i}", {"order": i / 10}, token=alice.access_token) for i in range(8))
    )
    assert all(r.status == 200 for r in replies)
    r = await api.get(base, token=alice.access_token)
    assert set(r.body["tags"]) == {f"t{i}" for i in range(8)}
    assert sorted(p for _, p in woken) == list(range(1, 9))
    assert {u for u, _ in woken} == {alice.user_id}


async def test_filter_load_for_sync(api: Api, server: RunningServer) -> None:
    from homeserver.errors import MatrixError

    alice = await api.register("alice")
    r = await api.post(
        f"/user/{alice.user_id}/filter",
        {"room": {"timeline": {"limit": 5}}},
        token=alice.access_token,
    )
    filters = server.hs.userdata.filters
    nid = (await server.hs.accounts.store.get_user(alice.user_id)).user_nid  # type: ignore[union-attr]
    f = await filters.load(nid, r.body["filter_id"])
    assert f.room.timeline.limit == 5
    f = await filters.load(nid, '{"room": {"state": {"lazy_load_members": true}}}')
    assert f.room.state.lazy_load_members
    assert (await filters.load(nid, None)).room.timeline.limit is None
    for bad in ("12345", "{not json", '{"room": {"timeline": {"limit": "x"}}}'):
        try:
            await filters.load(nid, bad)
        except MatrixError as e:
            assert (e.status, e.errcode) == (400, "M_INVALID_PARAM")
        else:
            raise AssertionError(bad)
