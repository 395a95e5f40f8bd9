"""Which remote device lists a server keeps (server-server "Device Management"): a
user's list is cached only while one of our users shares a room with them. A
/keys/query for a room mate we do not track yet resyncs (GET /user/devices) and
fills the cache; once no room is shared any more the cache is dropped, so after a
rejoin the next query fetches the list afresh; updates for users we share no room
with are ignored."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from federation.device_lists import _device_keys
from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually, federated, name, register, relay
from tests.federation.test_e2ee_device_announcements import count_resyncs
from tests.federation.test_e2ee_federation import query, upload
from tests.helpers import Api, User
from tests.integration.e2ee_device import Device
from tests.spread import SpreadServer


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await federated(make_server), await federated(make_server)


async def join_via(server: RunningServer, user: User, room_id: str, via: str) -> None:
    async with Api(server.client_url) as api:
        r = await api.post(f"/join/{quote(room_id)}?via={quote(via)}", {}, token=user.access_token)
        assert r.status == 200, r.body


async def leave(server: RunningServer, user: User, room_id: str) -> None:
    async with Api(server.client_url) as api:
        r = await api.post(f"/rooms/{quote(room_id)}/leave", {}, token=user.access_token)
        assert r.status == 200, r.body


async def test_room_mates_are_resynced_on_query_and_forgotten_after_the_last_room(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    alice, bob = await register(a, "alice"), await register(b, "bob")
    cache = relay(a).device_lists.store
    resyncs = count_resyncs(a)
    # Bob's keys exist before any shared room: B tells A nothing about them.
    await upload(b, bob, {"device_keys": Device(bob.user_id, bob.device_id).device_keys()})

    # No shared room: asked for directly, nothing cached.
    answer = await query(a, alice, {bob.user_id: []})
    assert set(answer["device_keys"][bob.user_id]) == {bob.device_id}
    assert resyncs == [] and await cache.stream_ids([bob.user_id]) == {}

    async with Api(b.client_url) as api:
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=bob.access_token)
        assert r.status == 200, r.body
        room_id = str(r.body["room_id"])
    await join_via(a, alice, room_id, name(b))

    # A room mate A does not track yet: the query resyncs and is answered from the cache.
    answer = await query(a, alice, {bob.user_id: []})
    assert set(answer["device_keys"][bob.user_id]) == {bob.device_id}
    assert bob.user_id in resyncs
    assert bob.user_id in await cache.stream_ids([bob.user_id])
    # The sharing check takes any number of users (bound in chunks).
    many = [f"@u{i}:elsewhere.example" for i in range(1200)] + [bob.user_id]
    assert await cache.shared_with_local(many, name(a)) == {bob.user_id}

    # Alice leaves the only shared room: bob's cached list is dropped.
    await leave(a, alice, room_id)
    assert await eventually(lambda: cache.stream_ids([bob.user_id]), lambda d: d == {}) == {}
    assert await cache.devices_of([bob.user_id]) == []

    # Meanwhile bob gets a second device, which B has no reason to tell A about.
    async with Api(b.client_url) as api:
        r = await api.login("bob", bob.password)
        assert r.status == 200, r.body
    bob2 = User(bob.user_id, r.body["access_token"], r.body["device_id"], bob.password)
    await upload(b, bob2, {"device_keys": Device(bob.user_id, bob2.device_id).device_keys()})

    # After the rejoin the query fetches the list afresh: both devices.
    await join_via(a, alice, room_id, name(b))

    async def listed() -> set[str]:
        return set((await query(a, alice, {bob.user_id: []}))["device_keys"][bob.user_id])

    assert await eventually(listed, lambda s: len(s) == 2) == {bob.device_id, bob2.device_id}
    assert len(await cache.devices_of([bob.user_id])) == 2


async def test_updates_for_users_sharing_no_room_are_ignored(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    bob = await register(b, "bob")
    lists = relay(a).device_lists
    resyncs = count_resyncs(a)
    update = {"user_id": bob.user_id, "device_id": "PHONE", "stream_id": 5, "prev_id": []}
    await lists.on_device_list_update(name(b), update)
    await lists.on_signing_key_update(
        name(b),
        {"user_id": bob.user_id, "master_key": {"user_id": bob.user_id, "usage": ["master"]}},
    )
    assert resyncs == [] and await lists.store.stream_ids([bob.user_id]) == {}


def test_device_keys_are_kept_as_served_unless_they_name_another_device() -> None:
    user, device = "@bob:b.example", "PHONE"
    # Checking the keys' content is the clients' job: odd shapes are relayed.
    assert _device_keys({"device_keys": {}}, user, device) == {"device_keys": {}}
    keys = {"user_id": user, "device_id": device, "keys": {}}
    assert _device_keys(keys, user, device) == keys
    # Keys claiming another user's or device's identity are not served as this one's.
    assert _device_keys({"user_id": "@eve:b.example", "device_id": device}, user, device) is None
    assert _device_keys({"user_id": user, "device_id": "OTHER"}, user, device) is None
    assert _device_keys(["not", "keys"], user, device) is None


@pytest.mark.parametrize("processes", [3], indirect=True)
async def test_resyncs_run_on_the_background_lease_holder_only(
    make_server: ServerFactory,
) -> None:
    """Three processes (main holds the background lease; the ``sync`` and ``client``
    workers do not): an update a worker cannot apply (bob's list is not tracked yet) is
    written down and announced, and the main process fetches the list; the worker
    never calls /user/devices itself. A request nobody announced (a lost bus message,
    a failed fetch) is taken up by the holder's next pass."""
    a, b = await federated(make_server), await federated(make_server)
    assert isinstance(a, SpreadServer)
    worker = a.workers[0]
    alice, bob = await register(a, "alice"), await register(b, "bob")
    await upload(b, bob, {"device_keys": Device(bob.user_id, bob.device_id).device_keys()})
    async with Api(b.client_url) as api:
        r = await api.post("/createRoom", {"preset": "public_chat"}, token=bob.access_token)
        assert r.status == 200, r.body
        room_id = str(r.body["room_id"])
    await join_via(a, alice, room_id, name(b))
    main_resyncs, worker_resyncs = count_resyncs(a), count_resyncs(worker)
    lists = relay(worker).device_lists
    store = relay(a).device_lists.store

    # What the worker's federation listener would do with B's update.
    update = {"user_id": bob.user_id, "device_id": bob.device_id, "stream_id": 3, "prev_id": []}
    await lists.on_device_list_update(name(b), update)
    tracked = await eventually(lambda: store.stream_ids([bob.user_id]), lambda d: bool(d))
    assert bob.user_id in tracked
    assert main_resyncs == [bob.user_id] and worker_resyncs == []
    assert await eventually(lambda: store.wanted_resyncs(10), lambda w: w == []) == []
    assert {d.device_id for d in await store.devices_of([bob.user_id])} == {bob.device_id}

    # Asked for with no announcement: the holder's next pass (on gaining the lease, on
    # a bus catch-up, or its periodic retry) does it.
    await store.want_resync(bob.user_id, a.hs.clock.now_ms())
    await relay(a).device_lists.resync_wanted()
    assert await eventually(lambda: store.wanted_resyncs(10), lambda w: w == []) == []
    assert main_resyncs == [bob.user_id, bob.user_id] and worker_resyncs == []
