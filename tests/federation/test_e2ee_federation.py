"""End-to-end encryption across real servers: /keys/query and /keys/claim for remote
users, /user/devices, and the remote device-list cache kept by m.device_list_update."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest
import vodozemac

from federation.errors import FederationError
from homeserver.app import RunningServer
from homeserver.events.canonical import decode_base64, encode_base64
from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually, fed, federated, inbox, name, register, relay
from tests.helpers import Api, User
from tests.integration.e2ee_device import OLM, Device


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await federated(make_server), await federated(make_server)


async def shared_room(a: RunningServer, alice: User, b: RunningServer, bob: User) -> str:
    """A room on A that Bob (on B) has joined over federation."""
    async with Api(a.client_url) as api_a, Api(b.client_url) as api_b:
        r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        assert r.status == 200, r.body
        room_id = str(r.body["room_id"])
        r = await api_b.post(
            f"/join/{quote(room_id)}?via={quote(name(a))}", {}, token=bob.access_token
        )
        assert r.status == 200, r.body
    return room_id


async def upload(server: RunningServer, user: User, body: dict[str, Any]) -> None:
    async with Api(server.client_url) as api:
        r = await api.post("/keys/upload", body, token=user.access_token)
        assert r.status == 200, r.body


async def query(server: RunningServer, user: User, wanted: dict[str, list[str]]) -> Any:
    async with Api(server.client_url) as api:
        r = await api.post(
            "/keys/query", {"device_keys": wanted, "timeout": 5000}, token=user.access_token
        )
        assert r.status == 200, r.body
        return r.body


async def claim(server: RunningServer, user: User, wanted: dict[str, dict[str, str]]) -> Any:
    async with Api(server.client_url) as api:
        r = await api.post(
            "/keys/claim", {"one_time_keys": wanted, "timeout": 5000}, token=user.access_token
        )
        assert r.status == 200, r.body
        return r.body


async def test_keys_query_and_claim_for_a_user_on_another_server(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    dev = Device(bob.user_id, bob.device_id)
    otks = dev.one_time_keys(1)
    await upload(b, bob, {"device_keys": dev.device_keys(), "one_time_keys": otks})

    answer = await query(a, alice, {bob.user_id: []})
    assert answer["failures"] == {}
    got = answer["device_keys"][bob.user_id][bob.device_id]
    assert got["keys"] == {
        f"ed25519:{bob.device_id}": dev.ed25519,
        f"curve25519:{bob.device_id}": dev.curve25519,
    }
    assert got["signatures"][bob.user_id][f"ed25519:{bob.device_id}"]

    wanted = {bob.user_id: {bob.device_id: "signed_curve25519"}}
    first = await claim(a, alice, wanted)
    assert first["failures"] == {}
    ((key_id, key),) = first["one_time_keys"][bob.user_id][bob.device_id].items()
    assert {key_id: key} == otks  # the signed key bob's device published
    # Consumed exactly once: the second claim finds nothing left on B.
    second = await claim(a, alice, wanted)
    assert second == {"one_time_keys": {}, "failures": {}}
    assert await b.hs.e2ee.keys.one_time_key_counts(bob.user_id, bob.device_id) == {
        "signed_curve25519": 0
    }


async def test_unreachable_server_is_reported_in_failures(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await b.stop()
    answer = await query(a, alice, {bob.user_id: [], alice.user_id: []})
    assert set(answer["failures"]) == {name(b)}
    assert answer["device_keys"][alice.user_id] == {}
    claimed = await claim(a, alice, {bob.user_id: {bob.device_id: "signed_curve25519"}})
    assert set(claimed["failures"]) == {name(b)}


async def test_user_devices_serves_only_our_users(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    bob = await register(b, "bob")
    dev = Device(bob.user_id, bob.device_id)
    await upload(b, bob, {"device_keys": dev.device_keys()})
    client = fed(a).client
    path = "/_matrix/federation/v1/user/devices/" + quote(bob.user_id, safe="")
    got = await client.get_json(name(b), path)
    assert got["user_id"] == bob.user_id
    assert got["stream_id"] > 0
    assert [d["device_id"] for d in got["devices"]] == [bob.device_id]
    assert got["devices"][0]["keys"]["keys"][f"ed25519:{bob.device_id}"] == dev.ed25519
    with pytest.raises(FederationError) as e:
        await client.get_json(
            name(b), "/_matrix/federation/v1/user/devices/" + quote(f"@x:{name(a)}", safe="")
        )
    assert e.value.status == 400


async def test_device_list_updates_keep_a_remote_cache(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")

    # Bob shares a real room with Alice, so B sends his device-list updates to A.
    await shared_room(a, alice, b, bob)
    cache = relay(a).device_lists.store
    dev1 = Device(bob.user_id, bob.device_id)
    before = await a.hs.e2ee.keys.current_device_list_pos()
    await upload(b, bob, {"device_keys": dev1.device_keys()})
    # First update for an untracked user: A resyncs through /user/devices.
    tracked = await eventually(lambda: cache.stream_ids([bob.user_id]), bool)
    first_stream = tracked[bob.user_id]
    # A second device: an incremental update whose prev_id is what A holds.
    async with Api(b.client_url) as api:
        r = await api.login(bob.user_id, bob.password)
        assert r.status == 200
        bob2 = User(bob.user_id, r.body["access_token"], r.body["device_id"], bob.password)
    dev2 = Device(bob.user_id, bob2.device_id)
    await upload(b, bob2, {"device_keys": dev2.device_keys()})
    devices = await eventually(
        lambda: cache.devices_of([bob.user_id]), lambda d: len(d) == 2 and all(x.keys for x in d)
    )
    assert {d.device_id for d in devices} == {bob.device_id, bob2.device_id}
    assert (await cache.stream_ids([bob.user_id]))[bob.user_id] > first_stream
    # A's local clients learn that bob's devices changed.
    assert await a.hs.e2ee.keys.current_device_list_pos() > before

    # With B down, /keys/query on A answers bob from the cache.
    await b.stop()
    answer = await query(a, alice, {bob.user_id: []})
    assert answer["failures"] == {}
    assert set(answer["device_keys"][bob.user_id]) == {bob.device_id, bob2.device_id}
    assert (
        answer["device_keys"][bob.user_id][bob2.device_id]["keys"][f"curve25519:{bob2.device_id}"]
        == dev2.curve25519
    )


async def test_olm_message_from_a_device_on_one_server_decrypts_on_another(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """The whole relay: query and claim across servers, an Olm pre-key message sent
    as m.room.encrypted to-device through the outbox, decrypted by bob's device."""
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    bdev = Device(bob.user_id, bob.device_id)
    await upload(
        b, bob, {"device_keys": bdev.device_keys(), "one_time_keys": bdev.one_time_keys(1)}
    )
    adev = Device(alice.user_id, alice.device_id)
    await upload(a, alice, {"device_keys": adev.device_keys()})

    keys = (await query(a, alice, {bob.user_id: [bob.device_id]}))["device_keys"]
    bob_curve = keys[bob.user_id][bob.device_id]["keys"][f"curve25519:{bob.device_id}"]
    claimed = await claim(a, alice, {bob.user_id: {bob.device_id: "signed_curve25519"}})
    ((_, otk),) = claimed["one_time_keys"][bob.user_id][bob.device_id].items()
    session = adev.account.create_outbound_session(
        vodozemac.Curve25519PublicKey.from_base64(bob_curve),
        vodozemac.Curve25519PublicKey.from_base64(otk["key"]),
    )
    msg_type, raw = session.encrypt(b"room key for bob").to_parts()
    content = {
        "algorithm": OLM,
        "sender_key": adev.curve25519,
        "ciphertext": {bob_curve: {"type": msg_type, "body": encode_base64(raw)}},
    }
    async with Api(a.client_url) as api:
        r = await api.put(
            "/sendToDevice/m.room.encrypted/olm1",
            {"messages": {bob.user_id: {bob.device_id: content}}},
            token=alice.access_token,
        )
        assert r.status == 200, r.body

    got = await eventually(lambda: inbox(b, bob), bool)
    assert [(e["sender"], e["type"]) for e in got] == [(alice.user_id, "m.room.encrypted")]
    sealed = got[0]["content"]["ciphertext"][bdev.curve25519]
    message = vodozemac.AnyOlmMessage.from_parts(sealed["type"], decode_base64(sealed["body"]))
    _, plaintext = bdev.account.create_inbound_session(
        vodozemac.Curve25519PublicKey.from_base64(got[0]["content"]["sender_key"]),
        message.to_pre_key(),
    )
    assert plaintext == b"room key for bob"
