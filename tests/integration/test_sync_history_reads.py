"""Timelines that /sync reads from a room's history: an initial sync and a room joined
since the token (the behaviour Synapse has and Sytest's 31sync and 10apidoc expect)."""

from __future__ import annotations

import json

from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def test_initial_sync_prev_batch_of_a_whole_room_repeats_it_in_messages(api: Api) -> None:
    """When all of a room fits the initial timeline, prev_batch is the sync position:
    /messages backwards from it gives the timeline again, with ``end``; the page after
    that is empty and has no ``end``."""
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    await send_text(api, alice, room_id, "hello", "t1")
    r = await api.get("/sync", token=alice.access_token)
    room = r.body["rooms"]["join"][room_id]
    assert room["timeline"]["limited"] is False
    shown = [e["event_id"] for e in room["timeline"]["events"]]
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=alice.access_token,
        params={"dir": "b", "from": room["timeline"]["prev_batch"]},
    )
    assert r.status == 200, r.body
    assert [e["event_id"] for e in r.body["chunk"]] == shown[::-1]
    assert "end" in r.body
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=alice.access_token,
        params={"dir": "b", "from": r.body["end"]},
    )
    assert r.body["chunk"] == [] and "end" not in r.body


async def test_newly_joined_room_timeline_reaches_before_the_join(api: Api) -> None:
    """A room joined since the last sync gets the history the user may see (shared
    visibility: from before the token), marked limited, with no state left outside."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="public_chat")
    flt = json.dumps({"room": {"timeline": {"types": ["m.room.message"], "limit": 10}}})
    early = [await send_text(api, alice, room_id, f"a{i}", f"a{i}") for i in range(3)]
    r = await api.get("/sync", token=bob.access_token, params={"filter": flt})
    since = r.body["next_batch"]
    late = [await send_text(api, alice, room_id, f"b{i}", f"b{i}") for i in range(3)]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    timeline = r.body["rooms"]["join"][room_id]["timeline"]
    assert [e["event_id"] for e in timeline["events"]] == early + late
    assert timeline["limited"] is True

    # Without a type filter the small room fits whole: the state is all in the timeline.
    r = await api.get("/sync", token=bob.access_token)
    since = r.body["next_batch"]
    carol = await api.register("carol")
    other = await create_room(api, alice)
    r = await api.get("/sync", token=carol.access_token)
    since = r.body["next_batch"]
    invited = await api.post(
        f"/rooms/{other}/invite", {"user_id": carol.user_id}, token=alice.access_token
    )
    assert invited.status == 200, invited.body
    assert (await api.post(f"/join/{other}", {}, token=carol.access_token)).status == 200
    r = await api.get("/sync", token=carol.access_token, params={"since": since})
    room = r.body["rooms"]["join"][other]
    assert room["timeline"]["limited"] is True
    assert room["timeline"]["events"][0]["type"] == "m.room.create"
    assert room["state"]["events"] == []


async def test_rejoin_timeline_reaches_back_past_hidden_history(api: Api) -> None:
    """With "joined" visibility the messages from while the user was away are hidden; the
    timeline of the rejoined room still reaches back to the state events in the room's
    current state that were set meanwhile (another member's join)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.put(
        f"/rooms/{room_id}/state/m.room.history_visibility/",
        {"history_visibility": "joined"},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api.get("/sync", token=bob.access_token)
    since = r.body["next_batch"]
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    assert (await api.post(f"/join/{room_id}", {}, token=carol.access_token)).status == 200
    for i in range(15):
        await send_text(api, alice, room_id, f"away {i}", f"w{i}")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    events = r.body["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == carol.user_id for e in events), (
        events
    )
    assert not any(e["type"] == "m.room.message" for e in events)


async def test_joined_and_left_in_one_batch_gives_the_full_state(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice)
    r = await api.put(
        f"/rooms/{room_id}/state/a.madeup.test.state/", {"my_key": 1}, token=alice.access_token
    )
    assert r.status == 200, r.body
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    flt = json.dumps(
        {"room": {"timeline": {"types": []}, "state": {"types": ["a.madeup.test.state"]}}}
    )
    r = await api.get("/sync", token=bob.access_token, params={"filter": flt})
    since = r.body["next_batch"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    r = await api.get("/sync", token=bob.access_token, params={"since": since, "filter": flt})
    state = r.body["rooms"]["leave"][room_id]["state"]["events"]
    assert [(e["type"], e["content"]) for e in state] == [("a.madeup.test.state", {"my_key": 1})]
