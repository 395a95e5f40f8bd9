"""Room versions 1-9 between two real Myelin servers over loopback TLS: joining
and being joined, invites, messages both ways, redactions, backfill of the
history before the join, and a v1 room's event ids naming their own server.

(Versions 10-12 are what the other federation tests run on.)
"""

from __future__ import annotations

import re

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, eventually
from tests.federation.rooms_support import name, q, register, send_text, settle, timeline_bodies
from tests.helpers import Api, User


async def _event(api: Api, user: User, room_id: str, event_id: str) -> dict[str, object]:
    r = await api.get(f"/rooms/{q(room_id)}/event/{q(event_id)}", token=user.access_token)
    assert r.status == 200, r.body
    body: dict[str, object] = r.body
    return body


@pytest.mark.parametrize("version", [str(n) for n in range(1, 10)])
async def test_two_servers_share_a_room_of_each_version(
    make_server: ServerFactory, version: str
) -> None:
    a: RunningServer = await make_server(federated=True, **FAST_RETRY)
    b: RunningServer = await make_server(federated=True, **FAST_RETRY)
    api_a, alice = await register(a, "alice")
    api_b, bob = await register(b, "bob")
    _, carol = await register(b, "carol")
    api_c = Api(b.client_url)
    await api_c.__aenter__()
    carol_token = carol.access_token
    try:
        r = await api_a.post(
            "/createRoom",
            {"preset": "public_chat", "room_version": version},
            token=alice.access_token,
        )
        assert r.status == 200, r.body
        room_id = r.body["room_id"]
        early = [await send_text(api_a, alice, room_id, f"early {n}") for n in range(3)]
        if int(version) <= 2:
            assert all(re.fullmatch(rf"\$[^:]+:{re.escape(name(a))}", i) for i in early)

        # B joins A's room (make_join/send_join in this version).
        r = await api_b.post(
            f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)

        # Messages both ways; B's own events carry B's ids in v1/v2.
        from_b = await send_text(api_b, bob, room_id, "from B")
        if int(version) <= 2:
            assert from_b.endswith(":" + name(b))
        await settle(a, b)
        await send_text(api_a, alice, room_id, "from A")
        await settle(a, b)
        expected = ["early 0", "early 1", "early 2", "from B", "from A"]
        assert await timeline_bodies(api_a, alice, room_id) == expected
        # B pages back past its join: the early messages come by backfill.
        got = await eventually(
            lambda: timeline_bodies(api_b, bob, room_id), lambda bodies: bodies == expected
        )
        assert got == expected

        # A invites a second user of B (the invite goes through B's server).
        r = await api_a.post(
            f"/rooms/{q(room_id)}/invite", {"user_id": carol.user_id}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        r = await api_c.post(f"/rooms/{q(room_id)}/join", {}, token=carol_token)
        assert r.status == 200, r.body
        await settle(a, b)
        r = await api_a.get(f"/rooms/{q(room_id)}/joined_members", token=alice.access_token)
        assert set(r.body["joined"]) == {alice.user_id, bob.user_id, carol.user_id}

        # The room admin on A redacts B's message; B applies it.
        r = await api_a.put(
            f"/rooms/{q(room_id)}/redact/{q(from_b)}/t1", {}, token=alice.access_token
        )
        assert r.status == 200, r.body
        await settle(a, b)
        redacted = await eventually(
            lambda: _event(api_b, bob, room_id, from_b), lambda e: e.get("content") == {}
        )
        assert redacted.get("content") == {}
    finally:
        for api in (api_a, api_b, api_c):
            await api.__aexit__(None, None, None)
