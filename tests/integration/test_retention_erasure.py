"""Message retention (the purge job on its timer) and account erasure, over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.admin_support import V1, V2, make_admin
from tests.integration.purge_support import MAX_POLLS, bodies, create_room, say, timeline
from tests.integration.test_account_management import password_auth

DAY_MS = 24 * 60 * 60 * 1000


async def _messages_in_db(server: RunningServer, room: str) -> int:
    value = await server.hs.db.fetchval(
        "SELECT COUNT(*) FROM events e JOIN rooms r ON r.room_nid = e.room_nid"
        " WHERE r.room_id = $1 AND e.event_type = 'm.room.message'",
        room,
    )
    return int(value)


async def test_retention_purges_expired_events(make_server: ServerFactory) -> None:
    server = await make_server(
        retention={
            "enabled": True,
            "default_policy": {"max_lifetime": DAY_MS},
            "purge_interval_ms": 50,
        }
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        short = await create_room(api, alice, preset="public_chat")
        default = await create_room(api, alice, preset="public_chat")
        for room in (short, default):
            await say(api, alice, room, "old 1")
            await say(api, alice, room, "old 2")
        # The room's own policy: events expire after 1 ms (the state event itself stays).
        r = await api.put(
            f"/rooms/{short}/state/m.room.retention", {"max_lifetime": 1}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await asyncio.sleep(0.01)  # let the 1 ms lifetime pass for the last message
        # Clients stop seeing expired events at once...
        assert bodies(await timeline(api, alice, short)) == set()
        # ...and the job, on its 50 ms timer, deletes them (polled, bounded).
        for _ in range(MAX_POLLS):
            if await _messages_in_db(server, short) == 0:
                break
            await asyncio.sleep(0.05)
        assert await _messages_in_db(server, short) == 0
        # The server default (a day) keeps the other room's history.
        assert bodies(await timeline(api, alice, default)) == {"old 1", "old 2"}
        assert await _messages_in_db(server, default) == 2

        # The room still works: send, join, sync; its state is whole.
        await say(api, alice, short, "fresh")
        assert (await api.post(f"/join/{short}", {}, token=bob.access_token)).status == 200
        r = await api.get("/sync", token=bob.access_token)
        assert r.status == 200 and short in r.body["rooms"]["join"]
        r = await api.get(f"/rooms/{short}/state/m.room.retention", token=bob.access_token)
        assert r.body == {"max_lifetime": 1}
        r = await api.get(f"/rooms/{short}/joined_members", token=bob.access_token)
        assert sorted(r.body["joined"]) == [alice.user_id, bob.user_id]
        # A longer lifetime brings fresh messages back into view (nothing newer was lost).
        r = await api.put(
            f"/rooms/{short}/state/m.room.retention",
            {"max_lifetime": DAY_MS},
            token=alice.access_token,
        )
        await say(api, bob, short, "hello again")
        assert "hello again" in bodies(await timeline(api, bob, short))


async def _message_views(api: Api, reader: User, room: str, event_id: str) -> list[Any]:
    """The event as /event, /context, /messages and an initial /sync show it to ``reader``."""
    r = await api.get(f"/rooms/{room}/event/{event_id}", token=reader.access_token)
    assert r.status == 200, r.body
    views = [r.body]
    r = await api.get(f"/rooms/{room}/context/{event_id}", token=reader.access_token)
    views.append(r.body["event"])
    views.extend(e for e in await timeline(api, reader, room) if e["event_id"] == event_id)
    r = await api.get("/sync", token=reader.access_token)
    timeline_events = r.body["rooms"]["join"][room]["timeline"]["events"]
    views.extend(e for e in timeline_events if e["event_id"] == event_id)
    assert len(views) == 4
    return views


async def test_erase_on_deactivation(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room = await create_room(api, bob, preset="public_chat")
    for user in (alice, carol):
        assert (await api.post(f"/join/{room}", {}, token=user.access_token)).status == 200
    secret = await say(api, alice, room, "alice's secret")
    # A room alice runs (version 10: redaction there would drop power_levels.invite).
    ruled = await create_room(
        api, alice, room_version="10", name="Alice's rules", preset="public_chat"
    )
    assert (await api.post(f"/join/{ruled}", {}, token=bob.access_token)).status == 200
    kept = await say(api, carol, room, "carol's words")
    own = await say(api, carol, room, "carol's secret")
    await say(api, bob, room, "bob is last")
    for view in await _message_views(api, bob, room, secret):
        assert view["content"]["body"] == "alice's secret"

    # Admin API: deactivate with erase.
    r = await api.post(f"{V1}/deactivate/{alice.user_id}", {"erase": True}, token=root.access_token)
    assert r.status == 200, r.body
    for view in await _message_views(api, bob, room, secret):
        assert view["content"] == {} and view["sender"] == alice.user_id
    r = await api.get(f"{V2}/users/{alice.user_id}", token=root.access_token)
    assert r.body["erased"] is True and r.body["deactivated"] == 1
    r = await api.post(
        "/search",
        {"search_categories": {"room_events": {"search_term": "secret"}}},
        token=bob.access_token,
    )
    found = [x["result"]["event_id"] for x in r.body["search_categories"]["room_events"]["results"]]
    assert secret not in found and own in found
    # Alice's membership (state) keeps what the redaction algorithm keeps.
    r = await api.get(f"/rooms/{room}/state/m.room.member/{alice.user_id}", token=bob.access_token)
    assert r.body == {"membership": "leave"}
    # Her other state events are the room's rules: kept whole.
    r = await api.get(f"/rooms/{ruled}/state/m.room.name", token=bob.access_token)
    assert r.body == {"name": "Alice's rules"}
    r = await api.get(f"/rooms/{ruled}/state/m.room.power_levels", token=bob.access_token)
    assert r.body.get("invite") == 50 and r.body["users"] == {alice.user_id: 100}
    r = await api.get(f"/rooms/{ruled}/state/m.room.create", token=bob.access_token)
    assert r.body["creator"] == alice.user_id and r.body["room_version"] == "10"

    # Client API: carol erases herself; a deactivation without erase changes no content.
    r = await api.post("/account/deactivate", {"erase": True}, token=carol.access_token)
    assert r.status == 401
    r = await api.post(
        "/account/deactivate",
        {"erase": True, "auth": password_auth(carol, r.body["session"])},
        token=carol.access_token,
    )
    assert r.status == 200, r.body
    for event_id in (kept, own):
        for view in await _message_views(api, bob, room, event_id):
            assert view["content"] == {}
    dave = await api.register("dave")
    assert (await api.post(f"/join/{room}", {}, token=dave.access_token)).status == 200
    plain = await say(api, dave, room, "dave stays readable")
    r = await api.post("/account/deactivate", {}, token=dave.access_token)
    r = await api.post(
        "/account/deactivate",
        {"auth": password_auth(dave, r.body["session"])},
        token=dave.access_token,
    )
    assert r.status == 200
    for view in await _message_views(api, bob, room, plain):
        assert view["content"]["body"] == "dave stays readable"
    r = await api.get(f"{V2}/users/{dave.user_id}", token=root.access_token)
    assert r.body["erased"] is False
    # The room goes on.
    assert (await say(api, bob, room, "still works")).startswith("$")
