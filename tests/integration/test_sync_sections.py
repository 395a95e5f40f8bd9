"""/sync per-user and ephemeral sections over real HTTP: account data, presence,
typing, receipts, to-device, device lists and key counts; each appears once and
is gone from the next incremental sync."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.helpers import Api, User
from tests.integration.e2ee_device import Device
from tests.integration.sync_support import shared_room
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text


async def sync(api: Api, user: User, since: str | None = None, **params: str) -> dict[str, Any]:
    if since is not None:
        params["since"] = since
    r = await api.get("/sync", token=user.access_token, params=params)
    assert r.status == 200, r.body
    body: dict[str, Any] = r.body
    return body


def ephemeral(body: dict[str, Any], room_id: str) -> dict[str, Any]:
    room = body["rooms"]["join"].get(room_id)
    return {} if room is None else {e["type"]: e["content"] for e in room["ephemeral"]["events"]}


async def test_account_data_global_and_room_appear_once(api: Api) -> None:
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    first = await sync(api, alice)
    types = [e["type"] for e in first["account_data"]["events"]]
    assert "m.push_rules" in types  # the default ruleset on an initial sync
    since = first["next_batch"]
    uid = alice.user_id
    r = await api.put(f"/user/{uid}/account_data/org.x.g", {"a": 1}, token=alice.access_token)
    assert r.status == 200
    r = await api.put(
        f"/user/{uid}/rooms/{room_id}/account_data/org.x.r", {"b": 2}, token=alice.access_token
    )
    assert r.status == 200
    body = await sync(api, alice, since)
    assert body["account_data"]["events"] == [{"type": "org.x.g", "content": {"a": 1}}]
    room = body["rooms"]["join"][room_id]
    assert room["account_data"]["events"] == [{"type": "org.x.r", "content": {"b": 2}}]
    again = await sync(api, alice, body["next_batch"])
    assert again["account_data"]["events"] == [] and again["rooms"]["join"] == {}


async def test_presence_only_for_room_mates_and_set_presence(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    await shared_room(api, alice, bob)
    a0 = await sync(api, alice, set_presence="offline")
    c0 = await sync(api, carol, set_presence="offline")
    r = await api.put(
        f"/presence/{bob.user_id}/status",
        {"presence": "unavailable", "status_msg": "lunch"},
        token=bob.access_token,
    )
    assert r.status == 200
    a1 = await sync(api, alice, a0["next_batch"], set_presence="offline")
    got = {e["sender"]: e["content"] for e in a1["presence"]["events"]}
    assert got[bob.user_id]["presence"] == "unavailable"
    assert got[bob.user_id]["status_msg"] == "lunch"
    c1 = await sync(api, carol, c0["next_batch"], set_presence="offline")
    assert bob.user_id not in {e["sender"] for e in c1["presence"]["events"]}
    a2 = await sync(api, alice, a1["next_batch"], set_presence="offline")
    assert a2["presence"]["events"] == []
    # set_presence=online (the default) marks bob online; alice hears of it.
    await sync(api, bob)
    a3 = await sync(api, alice, a2["next_batch"], set_presence="offline")
    assert {e["sender"]: e["content"]["presence"] for e in a3["presence"]["events"]} == {
        bob.user_id: "online"
    }
    r = await api.get("/sync", token=bob.access_token, params={"set_presence": "away"})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_typing_wakes_long_poll_and_clears(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    since = (await sync(api, bob))["next_batch"]

    async def later() -> None:
        await asyncio.sleep(0.3)
        r = await api.put(
            f"/rooms/{room_id}/typing/{alice.user_id}",
            {"typing": True, "timeout": 30000},
            token=alice.access_token,
        )
        assert r.status == 200

    task = asyncio.create_task(later())
    started = time.monotonic()
    body = await sync(api, bob, since, timeout="10000")
    elapsed = time.monotonic() - started
    await task
    assert elapsed < 3.0, elapsed
    assert ephemeral(body, room_id)["m.typing"] == {"user_ids": [alice.user_id]}
    quiet = await sync(api, bob, body["next_batch"])
    assert quiet["rooms"]["join"] == {}
    r = await api.put(
        f"/rooms/{room_id}/typing/{alice.user_id}", {"typing": False}, token=alice.access_token
    )
    assert r.status == 200
    stopped = await sync(api, bob, quiet["next_batch"], timeout="5000")
    assert ephemeral(stopped, room_id)["m.typing"] == {"user_ids": []}


async def test_receipts_private_only_for_owner(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    event_id = await send_text(api, alice, room_id, "hi", "t1")
    a0, b0 = await sync(api, alice), await sync(api, bob)
    r = await api.post(
        f"/rooms/{room_id}/receipt/m.read.private/{event_id}", {}, token=bob.access_token
    )
    assert r.status == 200
    b1 = await sync(api, bob, b0["next_batch"])
    content = ephemeral(b1, room_id)["m.receipt"]
    assert bob.user_id in content[event_id]["m.read.private"]
    a1 = await sync(api, alice, a0["next_batch"])
    assert "m.receipt" not in ephemeral(a1, room_id)
    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=bob.access_token)
    assert r.status == 200
    a2 = await sync(api, alice, a1["next_batch"], timeout="5000")
    content = ephemeral(a2, room_id)["m.receipt"]
    assert list(content[event_id]) == ["m.read"]
    assert bob.user_id in content[event_id]["m.read"]
    a3 = await sync(api, alice, a2["next_batch"])
    assert a3["rooms"]["join"] == {}


async def test_to_device_delivered_once_in_order_and_bounded(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    b0 = await sync(api, bob)
    for i in range(105):
        body = {"messages": {bob.user_id: {bob.device_id: {"n": i}}}}
        r = await api.put(f"/sendToDevice/m.test/t{i}", body, token=alice.access_token)
        assert r.status == 200
    b1 = await sync(api, bob, b0["next_batch"])
    assert [e["content"]["n"] for e in b1["to_device"]["events"]] == list(range(100))
    assert b1["to_device"]["events"][0]["sender"] == alice.user_id
    b2 = await sync(api, bob, b1["next_batch"])
    assert [e["content"]["n"] for e in b2["to_device"]["events"]] == list(range(100, 105))
    # Re-using the older token (not yet acknowledged past it) redelivers the rest.
    again = await sync(api, bob, b1["next_batch"])
    assert [e["content"]["n"] for e in again["to_device"]["events"]] == list(range(100, 105))
    b3 = await sync(api, bob, b2["next_batch"])
    assert b3["to_device"]["events"] == []


async def test_device_lists_changed_and_left(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await shared_room(api, alice, bob)
    a0 = await sync(api, alice)
    dev = Device(bob.user_id, bob.device_id)
    r = await api.post(
        "/keys/upload",
        {"device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(3)},
        token=bob.access_token,
    )
    assert r.status == 200
    a1 = await sync(api, alice, a0["next_batch"], timeout="5000")
    assert a1["device_lists"] == {"changed": [bob.user_id], "left": []}
    a2 = await sync(api, alice, a1["next_batch"])
    assert a2["device_lists"] == {"changed": [], "left": []}
    r = await api.get(
        "/keys/changes",
        params={"from": a0["next_batch"], "to": a1["next_batch"]},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body["changed"] == [bob.user_id]
    assert (await api.post(f"/rooms/{room_id}/leave", {}, token=bob.access_token)).status == 200
    a3 = await sync(api, alice, a2["next_batch"])
    assert a3["device_lists"] == {"changed": [], "left": [bob.user_id]}
    # Key counts are in every answer, incremental ones included.
    b = await sync(api, bob)
    assert b["device_one_time_keys_count"]["signed_curve25519"] == 3
    assert b["device_unused_fallback_key_types"] == []
    assert a3["device_one_time_keys_count"] == {"signed_curve25519": 0}
    assert a3["device_unused_fallback_key_types"] == []
    r = await api.post(
        "/keys/upload", {"fallback_keys": dev.fallback_key()}, token=bob.access_token
    )
    assert r.status == 200
    b2 = await sync(api, bob, b["next_batch"])
    assert b2["device_unused_fallback_key_types"] == ["signed_curve25519"]


async def test_invited_user_appears_in_device_lists_changed(api: Api) -> None:
    """Clients encrypt for invitees too, so an invite starts their device tracking
    (as a join does); the invitee is not reported as left meanwhile."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, alice, preset="private_chat")
    a0 = await sync(api, alice)
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": bob.user_id}, token=alice.access_token
    )
    assert r.status == 200, r.body
    a1 = await sync(api, alice, a0["next_batch"])
    assert a1["device_lists"] == {"changed": [bob.user_id], "left": []}
    # /keys/changes over the same span agrees with /sync.
    r = await api.get(
        "/keys/changes",
        params={"from": a0["next_batch"], "to": a1["next_batch"]},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body == {"changed": [bob.user_id], "left": []}
    a2 = await sync(api, alice, a1["next_batch"])
    assert a2["device_lists"] == {"changed": [], "left": []}
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    a3 = await sync(api, alice, a2["next_batch"])
    assert a3["device_lists"] == {"changed": [bob.user_id], "left": []}


async def test_to_device_survives_restart_until_acknowledged(tmp_path: Any) -> None:
    from homeserver.app import start
    from tests.conftest import fresh_database, make_config, write_data_dir

    data_dir = tmp_path / "restart"
    write_data_dir(data_dir, "localhost")
    async with fresh_database(data_dir) as url:
        server = await start(make_config(data_dir, url))
        async with Api(server.client_url) as api:
            alice = await api.register("alice")
            bob = await api.register("bob")
            b0 = await sync(api, bob)
            body = {"messages": {bob.user_id: {"*": {"room_key": "opaque"}}}}
            r = await api.put("/sendToDevice/m.room.encrypted/t", body, token=alice.access_token)
            assert r.status == 200
            b1 = await sync(api, bob, b0["next_batch"])  # delivered, not yet acknowledged
            assert [e["content"] for e in b1["to_device"]["events"]] == [{"room_key": "opaque"}]
        await server.stop()
        server = await start(make_config(data_dir, url))
        try:
            async with Api(server.client_url) as api:
                again = await sync(api, bob, b0["next_batch"])
                assert [e["content"] for e in again["to_device"]["events"]] == [
                    {"room_key": "opaque"}
                ]
                acked = await sync(api, bob, again["next_batch"])
                assert acked["to_device"]["events"] == []
                later = await sync(api, bob, b0["next_batch"])  # deleted once acknowledged
                assert later["to_device"]["events"] == []
        finally:
            await server.stop()


async def test_new_login_and_its_deletion_reach_room_mates_device_lists(api: Api) -> None:
    """A new device is a device-list change the moment it exists (before it has keys):
    a room-mate's waiting /sync wakes with it; deleting that device is one too."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    outsider = await api.register("carol")
    await shared_room(api, alice, bob)
    a0 = await sync(api, alice)
    c0 = await sync(api, outsider)

    async def login_soon() -> str:
        await asyncio.sleep(0.3)
        r = await api.login("bob", bob.password)
        assert r.status == 200, r.body
        return str(r.body["device_id"])

    started = time.monotonic()
    a1, new_device = await asyncio.gather(
        sync(api, alice, a0["next_batch"], timeout="10000"), login_soon()
    )
    assert time.monotonic() - started < 5  # woken by the login, not by the timeout
    assert a1["device_lists"] == {"changed": [bob.user_id], "left": []}
    c1 = await sync(api, outsider, c0["next_batch"])
    assert c1["device_lists"] == {"changed": [], "left": []}  # no shared room

    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "bob"},
        "password": bob.password,
    }
    r = await api.delete(f"/devices/{new_device}", {"auth": auth}, token=bob.access_token)
    assert r.status == 200, r.body
    a2 = await sync(api, alice, a1["next_batch"])
    assert a2["device_lists"] == {"changed": [bob.user_id], "left": []}
