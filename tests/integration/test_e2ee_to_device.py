"""Send-to-device over real HTTP: '*', idempotent txn ids, inbox bound, outbox, ack."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.helpers import Api, User

# Also through one homeserver of three processes (tests/spread.py, PostgreSQL only).
pytestmark = pytest.mark.spread


async def second_device(api: Api, user: User) -> User:
    r = await api.login(user.user_id, user.password)
    return User(user.user_id, r.body["access_token"], r.body["device_id"], user.password)


async def test_to_device_star_idempotent_and_ack(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    bob2 = await second_device(api, bob)
    td = server.hs.e2ee.to_device
    content = {"algorithm": "m.olm.v1.curve25519-aes-sha2", "ciphertext": {"x": {"body": "c1"}}}
    body = {"messages": {bob.user_id: {"*": content}}}
    r = await api.put("/sendToDevice/m.room.encrypted/t1", body, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    r = await api.put("/sendToDevice/m.room.encrypted/t1", body, token=alice.access_token)
    assert r.status == 200  # retried: not queued twice
    expected = {"sender": alice.user_id, "type": "m.room.encrypted", "content": content}
    for device in (bob.device_id, bob2.device_id):
        events, pos = await td.to_device_for(bob.user_id, device, 0)
        assert events == [expected]
        assert pos > 0
    # One device by id; the same txn id from another device of alice is a new request.
    alice2 = await second_device(api, alice)
    one = {"messages": {bob.user_id: {bob2.device_id: {"n": 2}}}}
    r = await api.put("/sendToDevice/m.dummy/t1", one, token=alice2.access_token)
    assert r.status == 200
    events, pos = await td.to_device_for(bob.user_id, bob2.device_id, 0)
    assert [e["content"] for e in events] == [content, {"n": 2}]
    events, _ = await td.to_device_for(bob.user_id, bob.device_id, 0)
    assert len(events) == 1
    # Nothing is deleted until acknowledged; then only what was acknowledged.
    first_pos = (await td.to_device_for(bob.user_id, bob2.device_id, 0, limit=1))[1]
    await td.ack_to_device(bob.user_id, bob2.device_id, first_pos)
    events, last = await td.to_device_for(bob.user_id, bob2.device_id, 0)
    assert [e["content"] for e in events] == [{"n": 2}]
    assert await td.to_device_for(bob.user_id, bob2.device_id, last) == ([], last)
    # Deleting a device drops its inbox.
    auth = {"type": "m.login.password", "user": "bob", "password": bob.password}
    r = await api.delete(f"/devices/{bob.device_id}", {"auth": auth}, token=bob2.access_token)
    assert r.status == 200, r.body
    assert (await td.to_device_for(bob.user_id, bob.device_id, 0))[0] == []


async def test_inbox_bound_refuses_whole_request(make_server: Any) -> None:
    server: RunningServer = await make_server(limits={"max_to_device_inbox": 3})
    td = server.hs.e2ee.to_device
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        carol = await api.register("carol")
        for i in range(3):
            r = await api.put(
                f"/sendToDevice/m.x/a{i}",
                {"messages": {bob.user_id: {bob.device_id: {"i": i}}}},
                token=alice.access_token,
            )
            assert r.status == 200
        both = {"messages": {bob.user_id: {"*": {"i": 3}}, carol.user_id: {"*": {"i": 3}}}}
        r = await api.put("/sendToDevice/m.x/a3", both, token=alice.access_token)
        assert r.status == 429 and r.errcode == "M_LIMIT_EXCEEDED"
        assert bob.user_id in r.body["error"] and "full" in r.body["error"]
        assert (await td.to_device_for(carol.user_id, carol.device_id, 0))[0] == []
        events, pos = await td.to_device_for(bob.user_id, bob.device_id, 0)
        assert len(events) == 3
        await td.ack_to_device(bob.user_id, bob.device_id, pos)
        r = await api.put("/sendToDevice/m.x/a3", both, token=alice.access_token)
        assert r.status == 200  # the refused txn id was not recorded
        assert len((await td.to_device_for(carol.user_id, carol.device_id, 0))[0]) == 1


async def test_remote_recipients_go_to_outbox_and_bad_input(
    server: RunningServer, api: Api
) -> None:
    alice = await api.register("alice")
    store = server.hs.e2ee.to_device.store
    body = {
        "messages": {
            "@bob:remote.example": {"DEV": {"secret": "opaque"}},
            "@nobody:localhost": {"*": {"a": 1}},
        }
    }
    r = await api.put("/sendToDevice/m.room_key_request/r1", body, token=alice.access_token)
    assert r.status == 200
    assert await store.outbox_destinations() == ["remote.example"]
    ((oid, edu),) = await store.outbox_pending("remote.example", 0, 10)
    assert edu["sender"] == alice.user_id and edu["type"] == "m.room_key_request"
    assert edu["messages"] == {"@bob:remote.example": {"DEV": {"secret": "opaque"}}}
    assert edu["message_id"]
    await store.outbox_ack("remote.example", oid)
    assert await store.outbox_pending("remote.example", 0, 10) == []
    for bad in ({"messages": []}, {"messages": {"@a:localhost": {"D": "str"}}}, {}):
        r = await api.put("/sendToDevice/m.x/bad", bad, token=alice.access_token)
        assert r.status == 400 and r.errcode == "M_BAD_JSON", r.body
    r = await api.put(
        "/sendToDevice/m.x/bad", {"messages": {"not-a-user": {}}}, token=alice.access_token
    )
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"


async def test_to_device_survives_restart(tmp_path: Any) -> None:
    """Acknowledged sends are durable: the inbox is still there after a restart."""
    from homeserver.app import start
    from tests.conftest import fresh_database, make_config, write_data_dir

    data_dir = tmp_path / "restart"
    write_data_dir(data_dir, "localhost")
    async with fresh_database(data_dir) as url:
        server = await start(make_config(data_dir, url))
        async with Api(server.client_url) as api:
            alice = await api.register("alice")
            bob = await api.register("bob")
            body = {"messages": {bob.user_id: {"*": {"room_key": "opaque"}}}}
            r = await api.put("/sendToDevice/m.room.encrypted/t", body, token=alice.access_token)
            assert r.status == 200
        await server.stop()
        server = await start(make_config(data_dir, url))
        try:
            td = server.hs.e2ee.to_device
            events, _ = await td.to_device_for(bob.user_id, bob.device_id, 0)
            assert [e["content"] for e in events] == [{"room_key": "opaque"}]
        finally:
            await server.stop()
