"""A room blocked by a server admin stays closed over federation too: remote users cannot
join through this server, and this server's users get no invites to it."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.rooms_support import q, register, settle

V1 = "/_synapse/admin/v1"


async def make_admin(server: RunningServer, user_id: str) -> None:
    record = await server.hs.accounts.store.get_user(user_id)
    assert record is not None
    await server.hs.accounts.store.set_admin(record.user_nid, True)
    server.hs.auth.forget_user(user_id)


async def test_blocked_room_refuses_remote_join_and_invites(make_server: ServerFactory) -> None:
    a = await make_server(federated=True)
    b = await make_server(federated=True)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    await make_admin(a, alice.user_id)
    await make_admin(b, bob.user_id)
    try:
        # A room on A, blocked by A's admin: Bob (on B) cannot join through A.
        r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
        room_a = r.body["room_id"]
        r = await api_a.put(
            f"{V1}/rooms/{q(room_a)}/block", {"block": True}, token=alice.access_token
        )
        assert r.status == 200
        r = await api_b.post(
            f"/join/{q(room_a)}",
            {},
            token=bob.access_token,
            params={"server_name": a.hs.config.server_name},
        )
        assert r.status == 403, r.body
        r = await api_a.get(f"/rooms/{q(room_a)}/joined_members", token=alice.access_token)
        assert list(r.body["joined"]) == [alice.user_id]

        # A room on B, blocked by A's admin ahead of time: Alice gets no invite to it.
        r = await api_b.post("/createRoom", {"preset": "private_chat"}, token=bob.access_token)
        room_b = r.body["room_id"]
        r = await api_a.put(
            f"{V1}/rooms/{q(room_b)}/block", {"block": True}, token=alice.access_token
        )
        assert r.status == 200
        r = await api_b.post(
            f"/rooms/{q(room_b)}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 403, r.body
        await settle(a, b)
        r = await api_a.get("/sync", token=alice.access_token)
        assert room_b not in r.body.get("rooms", {}).get("invite", {})

        # Unblocked, the same invite and join work.
        r = await api_a.put(
            f"{V1}/rooms/{q(room_b)}/block", {"block": False}, token=alice.access_token
        )
        assert r.status == 200
        r = await api_b.post(
            f"/rooms/{q(room_b)}/invite", {"user_id": alice.user_id}, token=bob.access_token
        )
        assert r.status == 200, r.body
        r = await api_a.put(
            f"{V1}/rooms/{q(room_a)}/block", {"block": False}, token=alice.access_token
        )
        assert r.status == 200
        r = await api_b.post(
            f"/join/{q(room_a)}",
            {},
            token=bob.access_token,
            params={"server_name": a.hs.config.server_name},
        )
        assert r.status == 200, r.body
    finally:
        for api in (api_a, api_b):
            await api.__aexit__(None, None, None)
