"""Renaming a device (PUT /devices/{deviceId}) is a device-list change: the name is part
of the device's /keys/query entry, so users sharing a room hear of it in /sync."""

from __future__ import annotations

from tests.helpers import Api
from tests.integration.test_rooms_basic import create_room


async def test_rename_is_announced_and_absent_name_keeps_it(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    since = (await api.get("/sync", token=bob.access_token)).body["next_batch"]

    r = await api.put(
        f"/devices/{alice.device_id}", {"display_name": "Work laptop"}, token=alice.access_token
    )
    assert (r.status, r.body) == (200, {})
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    assert alice.user_id in r.body["device_lists"]["changed"]
    since = r.body["next_batch"]
    r = await api.post("/keys/query", {"device_keys": {alice.user_id: []}}, token=bob.access_token)
    assert r.status == 200

    # Without display_name the name stays, and nothing is announced.
    r = await api.put(f"/devices/{alice.device_id}", {}, token=alice.access_token)
    assert r.status == 200
    r = await api.get(f"/devices/{alice.device_id}", token=alice.access_token)
    assert r.body["display_name"] == "Work laptop"
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    assert alice.user_id not in r.body["device_lists"]["changed"]
    # The same name again is no change either.
    r = await api.put(
        f"/devices/{alice.device_id}", {"display_name": "Work laptop"}, token=alice.access_token
    )
    assert r.status == 200
    r = await api.get("/sync", token=bob.access_token, params={"since": since})
    assert alice.user_id not in r.body["device_lists"]["changed"]

    r = await api.put("/devices/NOSUCH", {"display_name": "x"}, token=alice.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.put("/devices/NOSUCH", {}, token=alice.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.put(f"/devices/{alice.device_id}", {"display_name": 5}, token=alice.access_token)
    assert r.status == 400
