"""History purge and room purge over the admin API, on both engines.

What a purge leaves behind: /messages ends cleanly at the purge point, purged
events are gone from /context and /event, the current state is intact, and
the room keeps working (send, sync, join).
"""

from __future__ import annotations

import asyncio
import time

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.admin_support import V1, V2, make_admin
from tests.integration.purge_support import (
    MAX_POLLS,
    bodies,
    create_room,
    say,
    timeline,
    wait_for_purge,
)


async def test_refusals(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    bob = await api.register("bob")
    room = await create_room(api, bob)
    event_id = await say(api, bob, room, "hello")
    for method, path in (
        ("POST", f"{V1}/purge_history/{room}"),
        ("POST", f"{V1}/purge_history/{room}/{event_id}"),
        ("GET", f"{V1}/purge_history_status/abc"),
        ("DELETE", f"{V1}/rooms/{room}"),
    ):
        r = await api.request(method, path, {"purge_up_to_ts": 1})
        assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), path
        r = await api.request(method, path, {"purge_up_to_ts": 1}, token=bob.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), path
    bad = (
        (f"{V1}/purge_history/not-a-room", {"purge_up_to_ts": 1}, 400, "M_INVALID_PARAM"),
        (f"{V1}/purge_history/!nope:localhost", {"purge_up_to_ts": 1}, 404, "M_NOT_FOUND"),
        (f"{V1}/purge_history/{room}", {}, 400, "M_INVALID_PARAM"),
        (f"{V1}/purge_history/{room}", {"purge_up_to_ts": "soon"}, 400, "M_INVALID_PARAM"),
        (f"{V1}/purge_history/{room}", {"purge_up_to_event_id": "$x"}, 404, "M_NOT_FOUND"),
        (f"{V1}/purge_history/{room}", {"delete_local_events": 1}, 400, "M_BAD_JSON"),
    )
    for path, body, status, errcode in bad:
        r = await api.post(path, body, token=t)
        assert (r.status, r.errcode) == (status, errcode), (path, body, r.body)
    r = await api.get(f"{V1}/purge_history_status/unknown", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.delete(f"{V1}/rooms/!nope:localhost", {}, token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    # Nothing was purged by the refused requests.
    assert "hello" in bodies(await timeline(api, bob, room))


async def test_purge_up_to_event(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(api, alice, preset="public_chat", name="Purged")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    ids = [await say(api, alice if i % 2 else bob, room, f"m{i}") for i in range(1, 6)]
    assert bodies(await timeline(api, bob, room)) == {"m1", "m2", "m3", "m4", "m5"}

    r = await api.post(f"{V1}/purge_history/{room}", {"purge_up_to_event_id": ids[3]}, token=t)
    assert r.status == 200, r.body
    assert await wait_for_purge(api, t, r.body["purge_id"]) == {"status": "complete"}

    # Back-pagination stops at the purge point: m4 (the point) and later only, and
    # nothing from before it (not even the old state events, which are kept as state).
    events = await timeline(api, bob, room)
    assert bodies(events) == {"m4", "m5"}
    assert [e["event_id"] for e in events] == [ids[4], ids[3]]
    for gone in ids[:3]:
        r = await api.get(f"/rooms/{room}/context/{gone}", token=bob.access_token)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        r = await api.get(f"/rooms/{room}/event/{gone}", token=bob.access_token)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.get(f"/rooms/{room}/context/{ids[3]}", token=bob.access_token)
    assert r.status == 200 and r.body["events_before"] == [], r.body
    # Purged events are deleted (delete_local_events false keeps local ones only as
    # state-like history off the timeline: here every sender is local).
    db = server.hs.db
    kept = await db.fetchval("SELECT COUNT(*) FROM events WHERE event_id IN ($1, $2, $3)", *ids[:3])
    assert kept == 3  # local events kept (off the timeline) without delete_local_events

    # The current state is whole and the room works: send, sync, join.
    r = await api.get(f"/rooms/{room}/state", token=bob.access_token)
    types = {e["type"] for e in r.body}
    assert {"m.room.create", "m.room.power_levels", "m.room.member", "m.room.name"} <= types
    after = await say(api, alice, room, "m6")
    assert (await api.post(f"/join/{room}", {}, token=carol.access_token)).status == 200
    r = await api.get("/sync", token=carol.access_token)
    assert r.status == 200
    timeline_ids = [e["event_id"] for e in r.body["rooms"]["join"][room]["timeline"]["events"]]
    assert after in timeline_ids and not set(ids[:3]) & set(timeline_ids)
    assert bodies(await timeline(api, carol, room)) == {"m4", "m5", "m6"}

    # delete_local_events deletes them for good; a second purge is harmless.
    r = await api.post(
        f"{V1}/purge_history/{room}/{ids[4]}", {"delete_local_events": True}, token=t
    )
    assert await wait_for_purge(api, t, r.body["purge_id"]) == {"status": "complete"}
    left = await db.fetchval(
        "SELECT COUNT(*) FROM events WHERE event_id IN ($1, $2, $3, $4)", *ids[:4]
    )
    assert left == 0
    assert bodies(await timeline(api, bob, room)) == {"m5", "m6"}
    r = await api.get(f"/rooms/{room}/state", token=bob.access_token)
    assert r.status == 200 and len(r.body) >= len(types)
    assert (await say(api, bob, room, "m7")).startswith("$")


async def test_purge_up_to_ts(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    room = await create_room(api, alice)
    old = [await say(api, alice, room, f"old{i}") for i in range(3)]
    r = await api.get(f"/rooms/{room}/event/{old[-1]}", token=alice.access_token)
    cutoff = int(r.body["origin_server_ts"]) + 1
    for _ in range(MAX_POLLS):  # later events must carry a later timestamp
        if time.time() * 1000 > cutoff:
            break
        await asyncio.sleep(0.005)
    new = [await say(api, alice, room, f"new{i}") for i in range(2)]
    r = await api.post(
        f"{V1}/purge_history/{room}",
        {"purge_up_to_ts": cutoff, "delete_local_events": True},
        token=t,
    )
    assert r.status == 200, r.body
    assert await wait_for_purge(api, t, r.body["purge_id"]) == {"status": "complete"}
    events = await timeline(api, alice, room)
    assert bodies(events) == {"new0", "new1"}
    assert [e["event_id"] for e in events] == new[::-1]
    r = await api.post(
        "/search",
        {"search_categories": {"room_events": {"search_term": "old0"}}},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body["search_categories"]["room_events"]["results"] == []


async def test_delete_room_with_purge(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat", room_alias_name="gone")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    await say(api, bob, room, "soon gone")
    r = await api.post(
        f"/rooms/{room}/receipt/m.read/{await say(api, alice, room, 'x')}",
        {},
        token=bob.access_token,
    )
    assert r.status == 200
    record = await server.hs.rooms_area.rooms.rooms.get_room(room)
    assert record is not None
    db = server.hs.db

    r = await api.delete(f"{V2}/rooms/{room}", {}, token=t)  # purge: true is the default
    assert r.status == 200, r.body
    r = await api.get(f"{V2}/rooms/delete_status/{r.body['delete_id']}", token=t)
    assert r.body["status"] == "complete", r.body
    assert sorted(r.body["shutdown_room"]["kicked_users"]) == [alice.user_id, bob.user_id]

    # Gone from every table keyed by the room.
    for table in ("events", "state_groups", "current_state", "room_memberships", "rooms"):
        count = await db.fetchval(
            f"SELECT COUNT(*) FROM {table} WHERE room_nid = $1", record.room_nid
        )
        assert count == 0, table
    assert await db.fetchval("SELECT COUNT(*) FROM receipts WHERE room_id = $1", room) == 0
    r = await api.get(f"{V1}/rooms/{room}", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.get("/directory/room/%23gone:localhost")
    assert r.status == 404
    r = await api.get(f"/rooms/{room}/messages", token=alice.access_token, params={"dir": "b"})
    assert r.status in (403, 404) and r.errcode in ("M_FORBIDDEN", "M_NOT_FOUND")
    r = await api.get("/sync", token=alice.access_token)
    assert r.status == 200 and room not in r.body.get("rooms", {}).get("join", {})

    # The server goes on: new rooms, and the v1 form answers with the outcome itself.
    other = await create_room(api, alice, name="next")
    await say(api, alice, other, "still here")
    r = await api.delete(f"{V1}/rooms/{other}", {"block": True}, token=t)
    assert r.status == 200, r.body
    assert r.body["kicked_users"] == [alice.user_id]
    r = await api.post(f"/join/{other}", {}, token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    third = await create_room(api, bob)
    await say(api, bob, third, "after")
    assert bodies(await timeline(api, bob, third)) == {"after"}


async def test_incremental_sync_across_a_purge_keeps_state_changes(
    server: RunningServer, api: Api
) -> None:
    """A client whose token predates the purge still learns the state set in between."""
    root = await make_admin(server, api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat", name="Before")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    flt = '{"room": {"timeline": {"limit": 2}}}'
    r = await api.get("/sync", token=bob.access_token, params={"filter": flt})
    since = r.body["next_batch"]
    r = await api.put(
        f"/rooms/{room}/state/m.room.name", {"name": "After"}, token=alice.access_token
    )
    assert r.status == 200
    ids = [await say(api, alice, room, f"m{i}") for i in range(5)]
    r = await api.post(
        f"{V1}/purge_history/{room}/{ids[3]}",
        {"delete_local_events": True},
        token=root.access_token,
    )
    assert await wait_for_purge(api, root.access_token, r.body["purge_id"]) == {
        "status": "complete"
    }
    r = await api.get("/sync", token=bob.access_token, params={"filter": flt, "since": since})
    assert r.status == 200, r.body
    joined = r.body["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is True
    assert [e["event_id"] for e in joined["timeline"]["events"]] == ids[3:]
    names = [e["content"] for e in joined["state"]["events"] if e["type"] == "m.room.name"]
    assert names == [{"name": "After"}]
