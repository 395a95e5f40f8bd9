"""Relations, threads, bundled aggregations, /search and the user directory,
over real HTTP."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room

V1 = "/_matrix/client/v1"


async def send(api: Api, user: User, room: str, content: dict[str, Any], txn: str) -> str:
    r = await api.put(f"/rooms/{room}/send/m.room.message/{txn}", content, token=user.access_token)
    assert r.status == 200, r.body
    event_id: str = r.body["event_id"]
    return event_id


def thread_reply(root: str, body: str) -> dict[str, Any]:
    return {
        "body": body,
        "msgtype": "m.text",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    }


async def test_relations_threads_and_bundles(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await create_room(api, alice, preset="public_chat")
    await api.post(f"/rooms/{room}/join", {}, token=bob.access_token)
    tok = alice.access_token
    root = await send(api, alice, room, {"body": "root", "msgtype": "m.text"}, "r")
    other = await send(api, alice, room, {"body": "other root", "msgtype": "m.text"}, "o")
    replies = [
        await send(api, bob, room, thread_reply(root, f"reply {i}"), f"t{i}") for i in range(3)
    ]
    await send(api, bob, room, thread_reply(other, "late"), "late")
    edit1 = await send(
        api,
        alice,
        room,
        {
            "body": "* root!",
            "msgtype": "m.text",
            "m.new_content": {"body": "root!", "msgtype": "m.text"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        },
        "e1",
    )
    # bob cannot edit alice's message: ignored in the aggregation
    await send(
        api,
        bob,
        room,
        {
            "body": "* hacked",
            "m.new_content": {"body": "hacked"},
            "m.relates_to": {"rel_type": "m.replace", "event_id": root},
        },
        "e2",
    )
    ref = await send(
        api,
        bob,
        room,
        {"body": "see", "m.relates_to": {"rel_type": "m.reference", "event_id": root}},
        "ref",
    )

    r = await api.get(f"{V1}/rooms/{room}/relations/{root}", token=tok)
    assert r.status == 200, r.body
    assert len(r.body["chunk"]) == 6
    assert r.body["chunk"][0]["event_id"] == ref  # newest first by default

    r = await api.get(
        f"{V1}/rooms/{room}/relations/{root}/m.thread", params={"limit": "2"}, token=tok
    )
    assert [e["event_id"] for e in r.body["chunk"]] == [replies[2], replies[1]]
    r2 = await api.get(
        f"{V1}/rooms/{room}/relations/{root}/m.thread",
        params={"limit": "2", "from": r.body["next_batch"]},
        token=tok,
    )
    assert [e["event_id"] for e in r2.body["chunk"]] == [replies[0]]
    assert "next_batch" not in r2.body
    r = await api.get(
        f"{V1}/rooms/{room}/relations/{root}/m.thread/m.room.message",
        params={"dir": "f"},
        token=tok,
    )
    assert [e["event_id"] for e in r.body["chunk"]] == replies
    r = await api.get(f"{V1}/rooms/{room}/relations/{root}/m.thread/m.reaction", token=tok)
    assert r.body["chunk"] == []

    # refusals: not a member of a non-world-readable room; unknown event
    r = await api.get(f"{V1}/rooms/{room}/relations/{root}", token=eve.access_token)
    assert r.status == 403
    r = await api.get(f"{V1}/rooms/{room}/relations/$nope", token=tok)
    assert r.status == 404

    # bundled aggregations on /event, /messages and /context
    r = await api.get(f"/rooms/{room}/event/{root}", token=tok)
    rel = r.body["unsigned"]["m.relations"]
    assert rel["m.thread"]["count"] == 3
    assert rel["m.thread"]["latest_event"]["event_id"] == replies[2]
    assert rel["m.thread"]["current_user_participated"] is True  # alice sent the root
    assert rel["m.replace"]["event_id"] == edit1
    assert rel["m.replace"]["content"]["m.new_content"]["body"] == "root!"
    assert r.body["content"]["body"] == "root"  # content is left intact
    assert rel["m.reference"] == {"chunk": [{"event_id": ref}]}

    r = await api.get(f"/rooms/{room}/messages", params={"limit": "50"}, token=bob.access_token)
    by_id = {e["event_id"]: e for e in r.body["chunk"]}
    assert by_id[root]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"] is True
    assert "m.relations" not in by_id[replies[0]]["unsigned"]
    r = await api.get(f"/rooms/{room}/context/{root}", token=tok)
    assert r.body["event"]["unsigned"]["m.relations"]["m.thread"]["count"] == 3

    # /sync timeline events carry them too
    flt = '{"room": {"timeline": {"limit": 50}}}'
    r = await api.get("/sync", token=tok, params={"filter": flt})
    timeline = r.body["rooms"]["join"][room]["timeline"]["events"]
    synced = {e["event_id"]: e for e in timeline}
    assert synced[root]["unsigned"]["m.relations"]["m.thread"]["count"] == 3

    # threads: most recent activity first; participated filter
    r = await api.get(f"{V1}/rooms/{room}/threads", token=tok)
    assert [e["event_id"] for e in r.body["chunk"]] == [other, root]
    r = await api.get(f"{V1}/rooms/{room}/threads", params={"limit": "1"}, token=tok)
    assert [e["event_id"] for e in r.body["chunk"]] == [other]
    r = await api.get(
        f"{V1}/rooms/{room}/threads", params={"limit": "1", "from": r.body["next_batch"]}, token=tok
    )
    assert [e["event_id"] for e in r.body["chunk"]] == [root]
    carol = await api.register("carol")
    await api.post(f"/rooms/{room}/join", {}, token=carol.access_token)
    await send(api, carol, room, thread_reply(root, "me too"), "c1")
    r = await api.get(
        f"{V1}/rooms/{room}/threads", params={"include": "participated"}, token=carol.access_token
    )
    assert [e["event_id"] for e in r.body["chunk"]] == [root]
    r = await api.get(f"{V1}/rooms/{room}/threads", params={"include": "bogus"}, token=tok)
    assert r.status == 400
    r = await api.get(f"{V1}/rooms/{room}/threads", token=eve.access_token)
    assert r.status == 403

    # redacting the edit removes it from the aggregation
    r = await api.put(f"/rooms/{room}/redact/{edit1}/x1", {}, token=tok)
    assert r.status == 200
    r = await api.get(f"/rooms/{room}/event/{root}", token=tok)
    assert "m.replace" not in r.body["unsigned"]["m.relations"]


async def test_relations_world_readable_for_non_members(api: Api) -> None:
    alice = await api.register("alice")
    eve = await api.register("eve")
    room = await create_room(
        api,
        alice,
        initial_state=[
            {
                "type": "m.room.history_visibility",
                "content": {"history_visibility": "world_readable"},
            }
        ],
    )
    root = await send(api, alice, room, {"body": "root"}, "r")
    reply = await send(api, alice, room, thread_reply(root, "x"), "t")
    r = await api.get(f"{V1}/rooms/{room}/relations/{root}", token=eve.access_token)
    assert r.status == 200 and [e["event_id"] for e in r.body["chunk"]] == [reply]
    # the other reading endpoints honour world_readable too, and refuse a shared room
    for path in (
        f"/rooms/{room}/messages",
        f"/rooms/{room}/context/{root}",
        f"/rooms/{room}/event/{root}",
    ):
        assert (await api.get(path, token=eve.access_token)).status == 200, path
    shared = await create_room(api, alice)
    hidden = await send(api, alice, shared, {"body": "hidden"}, "h")
    assert (await api.get(f"/rooms/{shared}/messages", token=eve.access_token)).status == 403
    r = await api.get(f"/rooms/{shared}/context/{hidden}", token=eve.access_token)
    assert r.status == 403
    r = await api.get(f"/rooms/{shared}/event/{hidden}", token=eve.access_token)
    assert r.status == 404
    r = await api.get(f"{V1}/rooms/{shared}/relations/{hidden}", token=eve.access_token)
    assert r.status == 403
    # a thread cannot start from an event that itself relates (spec "Threading")
    r = await api.put(
        f"/rooms/{room}/send/m.room.message/bad",
        thread_reply(reply, "nested"),
        token=alice.access_token,
    )
    assert r.status == 400 and r.errcode == "M_UNKNOWN"


async def test_search(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    eve = await api.register("eve")
    room = await create_room(api, alice, preset="public_chat", name="Gardening club")
    secret = await create_room(
        api,
        alice,
        initial_state=[
            {"type": "m.room.encryption", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        ],
    )
    await api.post(f"/rooms/{room}/join", {}, token=bob.access_token)
    tok = alice.access_token
    ids = []
    for i, body in enumerate(
        ["tomatoes grow well", "cucumbers and tomatoes", "nothing to see", "ripe tomatoes today"]
    ):
        ids.append(
            await send(
                api, bob if i == 1 else alice, room, {"body": body, "msgtype": "m.text"}, f"s{i}"
            )
        )
    r = await api.put(
        f"/rooms/{secret}/send/m.room.encrypted/e1",
        {
            "algorithm": "m.megolm.v1.aes-sha2",
            "ciphertext": "tomatoes",
            "sender_key": "k",
            "session_id": "s",
            "device_id": "D",
        },
        token=tok,
    )
    assert r.status == 200

    def body(term: str, **extra: Any) -> dict[str, Any]:
        return {"search_categories": {"room_events": {"search_term": term, **extra}}}

    r = await api.post("/search", body("tomatoes", order_by="recent"), token=tok)
    assert r.status == 200, r.body
    res = r.body["search_categories"]["room_events"]
    assert [x["result"]["event_id"] for x in res["results"]] == [ids[3], ids[1], ids[0]]
    assert res["count"] == 3
    assert "tomatoes" in res["highlights"]

    r = await api.post("/search", body("TOMATOES", order_by="rank"), token=tok)
    res = r.body["search_categories"]["room_events"]
    assert {x["result"]["event_id"] for x in res["results"]} == {ids[0], ids[1], ids[3]}
    ranks = [x["rank"] for x in res["results"]]
    assert ranks == sorted(ranks, reverse=True)

    # pagination
    r = await api.post(
        "/search", body("tomatoes", order_by="recent", filter={"limit": 2}), token=tok
    )
    res = r.body["search_categories"]["room_events"]
    assert len(res["results"]) == 2 and "next_batch" in res
    r = await api.post(
        "/search",
        body("tomatoes", order_by="recent", filter={"limit": 2}),
        token=tok,
        params={"next_batch": res["next_batch"]},
    )
    res = r.body["search_categories"]["room_events"]
    assert [x["result"]["event_id"] for x in res["results"]] == [ids[0]]

    # keys, filter, context, groups, state
    r = await api.post("/search", body("gardening", keys=["content.name"]), token=tok)
    res = r.body["search_categories"]["room_events"]
    assert [x["result"]["type"] for x in res["results"]] == ["m.room.name"]
    r = await api.post(
        "/search",
        body(
            "tomatoes",
            order_by="recent",
            filter={"senders": [bob.user_id]},
            event_context={"before_limit": 1, "after_limit": 1, "include_profile": True},
            groupings={"group_by": [{"key": "room_id"}, {"key": "sender"}]},
            include_state=True,
        ),
        token=tok,
    )
    res = r.body["search_categories"]["room_events"]
    assert [x["result"]["event_id"] for x in res["results"]] == [ids[1]]
    ctx = res["results"][0]["context"]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[0]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[2]]
    assert bob.user_id in ctx["profile_info"]
    assert res["groups"]["room_id"][room]["results"] == [ids[1]]
    assert res["groups"]["sender"][bob.user_id]["results"] == [ids[1]]
    assert any(e["type"] == "m.room.name" for e in res["state"][room])

    # encrypted content is never found; non-members find nothing
    r = await api.post("/search", body("tomatoes", filter={"rooms": [secret]}), token=tok)
    assert r.body["search_categories"]["room_events"]["results"] == []
    r = await api.post("/search", body("tomatoes"), token=eve.access_token)
    assert r.body["search_categories"]["room_events"]["results"] == []
    # a redacted message is no longer found
    await api.put(f"/rooms/{room}/redact/{ids[3]}/x", {}, token=tok)
    r = await api.post("/search", body("ripe"), token=tok)
    assert r.body["search_categories"]["room_events"]["results"] == []
    # bad requests
    assert (await api.post("/search", {}, token=tok)).status == 400
    r = await api.post("/search", body("x", order_by="sideways"), token=tok)
    assert r.status == 400
    r = await api.post("/search", body("x", keys=["content.secret"]), token=tok)
    assert r.status == 400
    r = await api.post("/search", body("x"), token=tok, params={"next_batch": "zz"})
    assert r.status == 400


async def test_user_directory(api: Api) -> None:
    alice = await api.register("alice")
    albert = await api.register("albert")
    bob = await api.register("bob")
    r = await api.put(
        f"/profile/{bob.user_id}/displayname",
        {"displayname": "Alberto Bob"},
        token=bob.access_token,
    )
    assert r.status == 200
    # By default the directory shows users in a public room (or sharing one).
    room = await create_room(api, alice, preset="public_chat")
    for user in (albert, bob):
        assert (await api.post(f"/join/{room}", {}, token=user.access_token)).status == 200
    r = await api.post("/user_directory/search", {"search_term": "ALB"}, token=alice.access_token)
    assert r.status == 200, r.body
    ids = [x["user_id"] for x in r.body["results"]]
    assert ids == ["@albert:localhost", bob.user_id]
    assert r.body["results"][1]["display_name"] == "Alberto Bob"
    assert r.body["limited"] is False
    r = await api.post(
        "/user_directory/search", {"search_term": "al", "limit": 1}, token=alice.access_token
    )
    assert len(r.body["results"]) == 1 and r.body["limited"] is True
    r = await api.post("/user_directory/search", {"search_term": "%"}, token=alice.access_token)
    assert r.body["results"] == []
    assert (await api.post("/user_directory/search", {}, token=alice.access_token)).status == 400
    assert (await api.post("/user_directory/search", {"search_term": "a"})).status == 401
