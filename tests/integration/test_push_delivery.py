"""Push delivery over real HTTP to a real (loopback) push gateway: what is pushed and
what is not (own messages, DMs, mentions), retries while the gateway fails, in order,
catching up after a restart what a crash left undelivered, and the pushers a password
change removes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.conftest import RestartFn, ServerFactory
from tests.helpers import Api, User
from tests.integration.test_account_management import password_auth
from tests.integration.test_pushers import Gateway, is_type, pusher_body, set_pusher
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

FAST_RETRY_S = 0.05


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    await gw.start()
    yield gw
    await gw.stop()


def fast_retries(server: RunningServer) -> None:
    server.hs.sync_area.pushers.delivery.retry_s = FAST_RETRY_S


async def joined_pair(api: Api, **room: Any) -> tuple[User, User, str]:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, bob, preset="public_chat", **room)
    assert (await api.post(f"/join/{room_id}", {}, token=alice.access_token)).status == 200
    return alice, bob, room_id


def bodies(notes: list[dict[str, Any]]) -> list[str]:
    return [n["content"]["body"] for n in notes]


async def test_mentions_dms_and_own_messages(api: Api, gateway: Gateway) -> None:
    alice, bob, room_id = await joined_pair(api)
    await set_pusher(api, alice, pusher_body(gateway.url))
    await send_text(api, alice, room_id, "my own words", "a1")
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/b1",
        {"msgtype": "m.text", "body": "hey alice", "m.mentions": {"user_ids": [alice.user_id]}},
        token=bob.access_token,
    )
    assert r.status == 200
    mention = await gateway.next(is_type("m.room.message"))
    # Her own message came first in the room and was never pushed.
    assert mention["content"]["body"] == "hey alice"
    assert mention["devices"][0]["tweaks"].get("highlight") is True
    assert mention["prio"] == "high"

    # A one-to-one room: notify with a sound (default rule .m.rule.room_one_to_one).
    r = await api.post(
        "/createRoom",
        {"is_direct": True, "invite": [alice.user_id], "preset": "trusted_private_chat"},
        token=bob.access_token,
    )
    dm = r.body["room_id"]
    await gateway.next(is_type("m.room.member"))  # the invite
    assert (await api.post(f"/join/{dm}", {}, token=alice.access_token)).status == 200
    await send_text(api, bob, dm, "just us", "b2")
    note = await gateway.next(is_type("m.room.message"))
    assert note["room_id"] == dm and note["content"]["body"] == "just us"
    assert note["devices"][0]["tweaks"].get("sound") == "default"


async def test_failing_gateway_gets_everything_in_order(
    server: RunningServer, api: Api, gateway: Gateway
) -> None:
    fast_retries(server)
    alice, bob, room_id = await joined_pair(api)
    await set_pusher(api, alice, pusher_body(gateway.url))
    gateway.failures = 5
    for i in range(3):
        await send_text(api, bob, room_id, f"message {i}", f"t{i}")
    notes = [await gateway.next(is_type("m.room.message")) for _ in range(3)]
    assert bodies(notes) == ["message 0", "message 1", "message 2"]
    assert gateway.failures == 0
    assert gateway.received.empty()  # each delivered once


async def test_notifications_left_by_a_crash_are_pushed_after_restart(
    make_server: ServerFactory, restart_server: RestartFn, gateway: Gateway
) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice, bob, room_id = await joined_pair(api)
        await set_pusher(api, alice, pusher_body(gateway.url))
        # The process "dies" right after each commit: no hook after it runs.
        server.hs.sync_area.notifications.row_hooks.clear()
        await send_text(api, bob, room_id, "before the crash 1", "c1")
        await send_text(api, bob, room_id, "before the crash 2", "c2")
    server = await restart_server(server)
    notes = [await gateway.next(is_type("m.room.message")) for _ in range(2)]
    assert bodies(notes) == ["before the crash 1", "before the crash 2"]
    async with Api(server.client_url) as api:
        await send_text(api, bob, room_id, "after the restart", "c3")
        note = await gateway.next(is_type("m.room.message"))
        assert note["content"]["body"] == "after the restart"
    assert gateway.received.empty()


async def test_new_pusher_does_not_replay_history(api: Api, gateway: Gateway) -> None:
    alice, bob, room_id = await joined_pair(api)
    await send_text(api, bob, room_id, "old news", "o1")
    await set_pusher(api, alice, pusher_body(gateway.url))
    await send_text(api, bob, room_id, "fresh", "o2")
    note = await gateway.next(is_type("m.room.message"))
    assert note["content"]["body"] == "fresh"


async def test_password_change_removes_other_devices_pushers(api: Api, gateway: Gateway) -> None:
    alice = await api.register("alice")
    phone = (await api.login("alice", alice.password)).body["access_token"]
    await set_pusher(api, alice, pusher_body(gateway.url, pushkey="laptop"))
    r = await api.post("/pushers/set", pusher_body(gateway.url, "phone"), token=phone)
    assert r.status == 200
    r = await api.post(
        "/account/password",
        {"new_password": "new pass 1", "auth": password_auth(alice)},
        token=alice.access_token,
    )
    assert r.status == 200
    pushers = (await api.get("/pushers", token=alice.access_token)).body["pushers"]
    assert [p["pushkey"] for p in pushers] == ["laptop"]
