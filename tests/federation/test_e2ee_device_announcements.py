"""Device-list announcements across real servers (server-server "Device Management"):
a new login and a deleted device reach every server sharing a room as
m.device_list_update; cross-signing keys travel as m.signing_key_update and are
served by /user/devices and /user/keys/query."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually, fed, federated, name, register, relay
from tests.federation.test_e2ee_federation import query, shared_room, upload
from tests.helpers import Api, User
from tests.integration.e2ee_device import CrossSigningKey, Device

Edu = tuple[str, dict[str, Any]]


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await federated(make_server), await federated(make_server)


def record_edus(server: RunningServer, edu_type: str) -> list[Edu]:
    """Every ``edu_type`` EDU the server receives, as (origin, content); the real
    handler still runs."""
    handlers = relay(server).receiver.edus.handlers
    real = handlers[edu_type]
    seen: list[Edu] = []

    async def recording(origin: str, content: dict[str, Any]) -> None:
        seen.append((origin, content))
        await real(origin, content)

    handlers[edu_type] = recording
    return seen


def count_resyncs(server: RunningServer) -> list[str]:
    """Users whose whole device list the server fetched through /user/devices."""
    lists = relay(server).device_lists
    real = lists.resync
    calls: list[str] = []

    async def counting(user_id: str, *args: float) -> None:
        calls.append(user_id)
        await real(user_id, *args)

    lists.resync = counting  # type: ignore[method-assign]
    return calls


def password_auth(user: User) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
    }


async def test_new_login_and_deletion_reach_a_remote_room_mate(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await shared_room(a, alice, b, bob)
    cache = relay(a).device_lists.store
    edus = record_edus(a, "m.device_list_update")

    # A tracks bob once his first device's keys arrive (a resync of his whole list).
    dev1 = Device(bob.user_id, bob.device_id)
    await upload(b, bob, {"device_keys": dev1.device_keys()})
    await eventually(lambda: cache.stream_ids([bob.user_id]), bool)

    # A new login on B: announced at once, with its display name and no keys.
    async with Api(b.client_url) as api:
        r = await api.login("bob", bob.password, initial_device_display_name="Bob's phone")
        assert r.status == 200, r.body
    bob2 = User(bob.user_id, r.body["access_token"], r.body["device_id"], bob.password)

    def new_login(got: list[Edu]) -> bool:
        return any(c.get("device_id") == bob2.device_id for _, c in got)

    await eventually(lambda: _now(edus), new_login)
    found = [(o, c) for o, c in edus if c.get("device_id") == bob2.device_id]
    assert found, "the new login was not announced to A"
    origin, announced = found[0]
    assert origin == name(b)
    assert announced["user_id"] == bob.user_id
    assert announced["device_display_name"] == "Bob's phone"
    assert "keys" not in announced and "deleted" not in announced
    assert isinstance(announced["stream_id"], int) and len(announced["prev_id"]) == 1
    devices = await eventually(lambda: cache.devices_of([bob.user_id]), lambda d: len(d) == 2)
    new = next(d for d in devices if d.device_id == bob2.device_id)
    assert (new.display_name, new.keys) == ("Bob's phone", None)
    # Not yet a device with keys: /keys/query on A does not list it.
    answer = await query(a, alice, {bob.user_id: []})
    assert set(answer["device_keys"][bob.user_id]) == {bob.device_id}

    # Its keys follow; A's /keys/query now lists it.
    dev2 = Device(bob.user_id, bob2.device_id)
    await upload(b, bob2, {"device_keys": dev2.device_keys()})

    async def listed() -> set[str]:
        return set((await query(a, alice, {bob.user_id: []}))["device_keys"][bob.user_id])

    assert await eventually(listed, lambda s: len(s) == 2) == {bob.device_id, bob2.device_id}

    # Deleting it is announced with deleted: true and drops it from A's cache.
    async with Api(b.client_url) as api:
        r = await api.delete(
            f"/devices/{bob2.device_id}", {"auth": password_auth(bob)}, token=bob.access_token
        )
        assert r.status == 200, r.body

    def deleted(got: list[Edu]) -> bool:
        return any(c.get("deleted") is True for _, c in got)

    await eventually(lambda: _now(edus), deleted)
    found_gone = [c for _, c in edus if c.get("deleted") is True]
    assert found_gone, "the deletion was not announced to A"
    gone = found_gone[0]
    assert gone["device_id"] == bob2.device_id and gone["user_id"] == bob.user_id
    assert "keys" not in gone
    devices = await eventually(lambda: cache.devices_of([bob.user_id]), lambda d: len(d) == 1)
    assert [d.device_id for d in devices] == [bob.device_id]
    assert (await cache.stream_ids([bob.user_id]))[bob.user_id] == gone["stream_id"]

    # Answered from A's cache with B down: the deleted device is gone.
    await b.stop()
    answer = await query(a, alice, {bob.user_id: []})
    assert answer["failures"] == {}
    assert set(answer["device_keys"][bob.user_id]) == {bob.device_id}


async def _now(edus: list[Edu]) -> list[Edu]:
    return list(edus)


def cross_signing_body(
    msk: CrossSigningKey, ssk: CrossSigningKey, usk: CrossSigningKey
) -> dict[str, Any]:
    return {
        "master_key": msk.obj(),
        "self_signing_key": msk.sign(ssk.obj()),
        "user_signing_key": msk.sign(usk.obj()),
    }


def keyset(user_id: str) -> tuple[CrossSigningKey, CrossSigningKey, CrossSigningKey]:
    return (
        CrossSigningKey(user_id, "master"),
        CrossSigningKey(user_id, "self_signing"),
        CrossSigningKey(user_id, "user_signing"),
    )


async def test_cross_signing_keys_travel_by_signing_key_update(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await shared_room(a, alice, b, bob)
    cache = relay(b).device_lists.store
    edus = record_edus(b, "m.signing_key_update")
    resyncs = count_resyncs(b)
    adev = Device(alice.user_id, alice.device_id)
    await upload(a, alice, {"device_keys": adev.device_keys()})
    await eventually(lambda: cache.stream_ids([alice.user_id]), bool)
    assert resyncs == [alice.user_id]

    msk, ssk, usk = keyset(alice.user_id)
    async with Api(a.client_url) as api:
        r = await api.post(
            "/keys/device_signing/upload",
            cross_signing_body(msk, ssk, usk),
            token=alice.access_token,
        )
        assert r.status == 200, r.body  # the first upload needs no UIA

    # A serves them to servers: /user/devices and /user/keys/query (never the USK).
    client = fed(b).client
    path = "/_matrix/federation/v1/user/devices/" + quote(alice.user_id, safe="")
    got = await client.get_json(name(a), path)
    assert got["master_key"]["keys"] == {msk.key_id: msk.public}
    assert got["self_signing_key"]["keys"] == {ssk.key_id: ssk.public}
    assert "user_signing_key" not in got
    got = await client.post_json(
        name(a), "/_matrix/federation/v1/user/keys/query", {"device_keys": {alice.user_id: []}}
    )
    assert got["master_keys"][alice.user_id]["keys"] == {msk.key_id: msk.public}
    assert got["self_signing_keys"][alice.user_id]["keys"] == {ssk.key_id: ssk.public}
    assert alice.user_id not in got.get("user_signing_keys", {})

    # ... and pushes them to B, whose cache answers bob.
    def has_master(public: str) -> Any:
        def done(cs: dict[str, dict[str, Any]]) -> bool:
            master = cs.get(alice.user_id, {}).get("master", {})
            return bool(master.get("keys", {}).get(f"ed25519:{public}") == public)

        return done

    await eventually(lambda: cache.cross_signing_of([alice.user_id]), has_master(msk.public))
    answer = await query(b, bob, {alice.user_id: []})
    assert answer["failures"] == {}
    assert answer["master_keys"][alice.user_id]["keys"] == {msk.key_id: msk.public}
    assert answer["self_signing_keys"][alice.user_id] == msk.sign(ssk.obj())
    assert alice.user_id not in answer.get("user_signing_keys", {})

    # Alice signs her device with her self-signing key: the device's keys as B serves
    # them carry that signature (an m.device_list_update for the device).
    async with Api(a.client_url) as api:
        r = await api.post(
            "/keys/signatures/upload",
            {alice.user_id: {alice.device_id: ssk.sign(adev.device_keys())}},
            token=alice.access_token,
        )
        assert r.status == 200 and r.body["failures"] == {}, r.body

    async def device_sigs() -> dict[str, str]:
        got = await query(b, bob, {alice.user_id: []})
        sigs: dict[str, str] = got["device_keys"][alice.user_id][alice.device_id]["signatures"][
            alice.user_id
        ]
        return sigs

    sigs = await eventually(device_sigs, lambda s: ssk.key_id in s)
    assert set(sigs) == {f"ed25519:{alice.device_id}", ssk.key_id}

    # Alice replaces her keys (UIA): B's answer follows through the EDU alone.
    msk2, ssk2, usk2 = keyset(alice.user_id)
    body = cross_signing_body(msk2, ssk2, usk2)
    async with Api(a.client_url) as api:
        r = await api.post("/keys/device_signing/upload", body, token=alice.access_token)
        assert r.status == 401, r.body
        r = await api.post(
            "/keys/device_signing/upload",
            {**body, "auth": {**password_auth(alice), "session": r.body["session"]}},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
    await eventually(lambda: cache.cross_signing_of([alice.user_id]), has_master(msk2.public))
    updates = [c for o, c in edus if o == name(a) and c.get("user_id") == alice.user_id]
    assert [u["master_key"]["keys"] for u in updates] == [
        {msk.key_id: msk.public},
        {msk2.key_id: msk2.public},
    ]
    assert updates[-1]["self_signing_key"]["keys"] == {ssk2.key_id: ssk2.public}
    assert "user_signing_key" not in updates[-1]
    assert resyncs == [alice.user_id]  # applied from the EDUs, no refetch

    await a.stop()
    answer = await query(b, bob, {alice.user_id: []})
    assert answer["failures"] == {}
    assert answer["master_keys"][alice.user_id]["keys"] == {msk2.key_id: msk2.public}
    assert answer["self_signing_keys"][alice.user_id]["keys"] == {ssk2.key_id: ssk2.public}
    assert set(answer["device_keys"][alice.user_id]) == {alice.device_id}
