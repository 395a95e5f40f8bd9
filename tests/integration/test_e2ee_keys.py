"""Device keys, one-time/fallback keys, /keys/query, /keys/claim, device lists: real HTTP,
real Olm keys (vodozemac)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import vodozemac

from homeserver.app import RunningServer
from tests.helpers import Api, User
from tests.integration.e2ee_device import OLM, Device

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


async def upload(api: Api, user: User, body: dict[str, Any]) -> Any:
    return await api.post("/keys/upload", body, token=user.access_token)


async def test_upload_query_and_identity_key_rules(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await api.put(
        f"/devices/{alice.device_id}", {"display_name": "Alice phone"}, token=alice.access_token
    )
    dev = Device(alice.user_id, alice.device_id)
    r = await upload(
        api,
        alice,
        {
            "device_keys": dev.device_keys(),
            "one_time_keys": dev.one_time_keys(3),
            "fallback_keys": dev.fallback_key(),
        },
    )
    assert r.status == 200, r.body
    assert r.body["one_time_key_counts"] == {"signed_curve25519": 3}

    r = await api.post(
        "/keys/query",
        {"device_keys": {alice.user_id: [], "@carol:elsewhere.example": []}},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    got = r.body["device_keys"][alice.user_id][alice.device_id]
    assert got["keys"] == dev.device_keys()["keys"]
    assert got["signatures"] == dev.device_keys()["signatures"]
    assert got["unsigned"] == {"device_display_name": "Alice phone"}
    # A remote user is an honest failure naming the server, not an empty success.
    assert "elsewhere.example" in r.body["failures"]
    assert "@carol:elsewhere.example" not in r.body["device_keys"]

    # Identical re-upload is fine; new identity keys for the same device replace the old
    # ones (trusting them is the clients' job, as the spec and Synapse have it).
    r = await upload(api, alice, {"device_keys": dev.device_keys()})
    assert r.status == 200
    other = Device(alice.user_id, alice.device_id)
    r = await upload(api, alice, {"device_keys": other.device_keys()})
    assert r.status == 200
    r = await api.post("/keys/query", {"device_keys": {alice.user_id: []}}, token=bob.access_token)
    assert (
        r.body["device_keys"][alice.user_id][alice.device_id]["keys"] == other.device_keys()["keys"]
    )


async def test_upload_refuses_bad_keys(api: Api) -> None:
    alice = await api.register("alice")
    dev = Device(alice.user_id, alice.device_id)
    keys = dev.device_keys()
    unsigned = {k: v for k, v in keys.items() if k != "signatures"}
    r = await upload(api, alice, {"device_keys": unsigned})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await upload(api, alice, {"device_keys": {"user_id": alice.user_id}})
    assert r.status == 400
    foreign = Device(alice.user_id, "NOTMINE").device_keys()
    r = await upload(api, alice, {"device_keys": foreign})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    otks = dev.one_time_keys(1)
    r = await upload(api, alice, {"one_time_keys": otks})
    assert r.status == 200 and r.body["one_time_key_counts"]["signed_curve25519"] == 1
    (name,) = otks
    r = await upload(api, alice, {"one_time_keys": {name: {"key": "different"}}})
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await upload(api, alice, {"one_time_keys": otks})  # identical: accepted, still one
    assert r.status == 200 and r.body["one_time_key_counts"]["signed_curve25519"] == 1
    r = await upload(api, alice, {"one_time_keys": {"nocolon": "x"}})
    assert r.status == 400 and r.errcode == "M_BAD_JSON"


async def test_upload_accepts_signatures_it_cannot_verify(api: Api) -> None:
    """Checking device self-signatures is the clients' job (spec); Synapse stores them too."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    dev = Device(alice.user_id, alice.device_id)
    keys = {**dev.device_keys(), "algorithms": [OLM]}  # the signature no longer matches
    r = await upload(api, alice, {"device_keys": keys})
    assert r.status == 200, r.body
    r = await api.post("/keys/query", {"device_keys": {alice.user_id: []}}, token=bob.access_token)
    got = r.body["device_keys"][alice.user_id][alice.device_id]
    assert got["algorithms"] == [OLM] and got["signatures"] == keys["signatures"]


async def test_claimed_key_makes_a_working_olm_session(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    adev = Device(alice.user_id, alice.device_id)
    await upload(
        api, alice, {"device_keys": adev.device_keys(), "one_time_keys": adev.one_time_keys(1)}
    )
    r = await api.post(
        "/keys/claim",
        {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    ((key_id, key),) = r.body["one_time_keys"][alice.user_id][alice.device_id].items()
    assert key_id.startswith("signed_curve25519:")
    bdev = Device(bob.user_id, bob.device_id)
    session = bdev.account.create_outbound_session(
        vodozemac.Curve25519PublicKey.from_base64(adev.curve25519),
        vodozemac.Curve25519PublicKey.from_base64(key["key"]),
    )
    message = session.encrypt(b"hello alice")
    _, plaintext = adev.account.create_inbound_session(
        bdev.account.curve25519_key, message.to_pre_key()
    )
    assert plaintext == b"hello alice"


async def test_concurrent_claims_hand_out_each_key_once(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    dev = Device(alice.user_id, alice.device_id)
    otks = dev.one_time_keys(5)
    fallback = dev.fallback_key()
    await upload(
        api,
        alice,
        {"device_keys": dev.device_keys(), "one_time_keys": otks, "fallback_keys": fallback},
    )
    keys = server.hs.e2ee.keys
    assert await keys.unused_fallback_key_types(alice.user_id, alice.device_id) == [
        "signed_curve25519"
    ]
    body = {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}}
    replies = await asyncio.gather(
        *(api.post("/keys/claim", body, token=bob.access_token) for _ in range(20))
    )
    assert all(r.status == 200 for r in replies)
    claimed = [
        next(iter(r.body["one_time_keys"][alice.user_id][alice.device_id].items())) for r in replies
    ]
    # vodozemac numbers fallback keys like one-time keys, so compare the public keys.
    otk_values = sorted(v["key"] for v in otks.values())
    (fallback_value,) = (v["key"] for v in fallback.values())
    got_otks = sorted(k["key"] for _, k in claimed if k["key"] != fallback_value)
    fallback_ids = [k for _, k in claimed if k["key"] == fallback_value]
    assert got_otks == otk_values  # every one-time key exactly once
    assert all(k.get("fallback") is True for k in fallback_ids)
    assert len(fallback_ids) == 15
    assert await keys.one_time_key_counts(alice.user_id, alice.device_id) == {
        "signed_curve25519": 0
    }
    assert await keys.unused_fallback_key_types(alice.user_id, alice.device_id) == []
    # A new fallback key is unused again.
    await upload(api, alice, {"fallback_keys": dev.fallback_key()})
    assert await keys.unused_fallback_key_types(alice.user_id, alice.device_id) == [
        "signed_curve25519"
    ]


async def test_device_deletion_drops_keys_and_bumps_device_list(
    server: RunningServer, api: Api
) -> None:
    alice = await api.register("alice")
    r = await api.login("alice", alice.password)
    second = User(alice.user_id, r.body["access_token"], r.body["device_id"], alice.password)
    dev = Device(alice.user_id, second.device_id)
    keys = server.hs.e2ee.keys
    before = await keys.current_device_list_pos()
    await upload(
        api, second, {"device_keys": dev.device_keys(), "one_time_keys": dev.one_time_keys(2)}
    )
    after_upload = await keys.current_device_list_pos()
    assert after_upload > before
    r = await api.get(
        "/keys/changes",
        params={"from": str(before), "to": f"s1_dl{after_upload}"},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body["changed"] == [alice.user_id]

    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": alice.password,
    }
    r = await api.delete(f"/devices/{second.device_id}", {"auth": auth}, token=alice.access_token)
    assert r.status == 200, r.body
    after_delete = await keys.current_device_list_pos()
    assert after_delete > after_upload
    r = await api.get(
        "/keys/changes",
        params={"from": f"dl{after_upload}", "to": f"dl{after_delete}"},
        token=alice.access_token,
    )
    assert r.body["changed"] == [alice.user_id]
    r = await api.post(
        "/keys/query", {"device_keys": {alice.user_id: []}}, token=alice.access_token
    )
    assert r.body["device_keys"][alice.user_id] == {}
    assert await keys.one_time_key_counts(alice.user_id, second.device_id) == {
        "signed_curve25519": 0
    }
    r = await api.get("/keys/changes", params={"from": "x!", "to": "1"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.get("/keys/changes", params={"from": "1"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"


async def test_device_list_changes_needs_a_shared_room(make_server: Any) -> None:
    """device_list_changes shows other users only when the lookup says a room is shared."""
    server: RunningServer = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        dev = Device(bob.user_id, bob.device_id)
        keys = server.hs.e2ee.keys
        start = await keys.current_device_list_pos()
        await upload(api, bob, {"device_keys": dev.device_keys()})
        end = await keys.current_device_list_pos()
        assert await keys.device_list_changes(alice.user_id, start, end) == set()

        async def sharing(user_id: str) -> set[str]:
            return {bob.user_id} if user_id == alice.user_id else set()

        keys.users_sharing_room_with = sharing
        assert await keys.device_list_changes(alice.user_id, start, end) == {bob.user_id}
        assert await keys.device_list_changes(alice.user_id, end, end) == set()


async def test_keys_changes_lists_users_who_stopped_sharing_rooms(api: Api) -> None:
    """``left`` in /keys/changes: room-mates who left, and members of a room we left,
    once no room is shared any more (spec: "Tracking the device list for a user")."""
    from tests.integration.test_rooms_basic import create_room

    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    with_bob = await create_room(api, alice, preset="public_chat")
    with_carol = await create_room(api, alice, preset="public_chat")
    also_bob = await create_room(api, carol, preset="public_chat")
    for user, room in ((bob, with_bob), (carol, with_carol), (bob, also_bob)):
        assert (await api.post(f"/join/{room}", {}, token=user.access_token)).status == 200
    t1 = (await api.get("/sync", token=alice.access_token)).body["next_batch"]

    assert (await api.post(f"/rooms/{with_bob}/leave", {}, token=bob.access_token)).status == 200
    assert (
        await api.post(f"/rooms/{with_carol}/leave", {}, token=alice.access_token)
    ).status == 200
    t2 = (await api.get("/sync", token=alice.access_token)).body["next_batch"]

    r = await api.get("/keys/changes", token=alice.access_token, params={"from": t1, "to": t2})
    assert r.status == 200, r.body
    assert r.body["left"] == sorted([bob.user_id, carol.user_id])
    assert bob.user_id not in r.body["changed"] and carol.user_id not in r.body["changed"]
    # Carol and bob still share a room: neither is "left" for the other.
    r = await api.get("/keys/changes", token=carol.access_token, params={"from": t1, "to": t2})
    assert r.status == 200 and bob.user_id not in r.body["left"]
    # Nothing happened between t2 and t2.
    r = await api.get("/keys/changes", token=alice.access_token, params={"from": t2, "to": t2})
    assert r.body == {"changed": [], "left": []}


async def test_device_rename_is_a_device_list_change(api: Api) -> None:
    """Sytest 41end-to-end-keys/06: renaming a device shows up in a room mate's /sync
    device_lists (the name is part of what /keys/query answers)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    first = await api.get("/sync", token=alice.access_token)
    r = await api.put(
        f"/devices/{bob.device_id}", {"display_name": "wibble"}, token=bob.access_token
    )
    assert r.status == 200
    r = await api.get("/sync", token=alice.access_token, params={"since": first.body["next_batch"]})
    assert bob.user_id in r.body["device_lists"]["changed"]
    r = await api.post("/keys/query", {"device_keys": {bob.user_id: []}}, token=alice.access_token)
    assert r.status == 200


async def test_device_keys_without_ed25519_are_kept(api: Api) -> None:
    """The spec names no required key algorithm (Sytest uploads curve25519 only)."""
    alice = await api.register("alice")
    keys = {
        "user_id": alice.user_id,
        "device_id": alice.device_id,
        "algorithms": [OLM],
        "keys": {f"curve25519:{alice.device_id}": "curvekey"},
        "signatures": {},
    }
    r = await upload(api, alice, {"device_keys": keys})
    assert r.status == 200, r.body
    r = await api.post(
        "/keys/query", {"device_keys": {alice.user_id: []}}, token=alice.access_token
    )
    assert r.body["device_keys"][alice.user_id][alice.device_id]["keys"] == keys["keys"]


async def test_keys_changes_lists_new_room_mates(api: Api) -> None:
    """/keys/changes "changed" includes users who now share a room (spec; Sytest 06)."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    before = (await api.get("/sync", token=alice.access_token)).body["next_batch"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    after = (await api.get("/sync", token=alice.access_token, params={"since": before})).body[
        "next_batch"
    ]
    r = await api.get(
        "/keys/changes", token=alice.access_token, params={"from": before, "to": after}
    )
    assert r.status == 200 and bob.user_id in r.body["changed"]
