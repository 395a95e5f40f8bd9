"""HTTP pushers over real HTTP: registration rules, and notifications delivered to a real
push gateway (an aiohttp server on loopback that records what it is sent, as Sytest's
61push tests run one): messages, invites, names, badge updates on receipts, rejected
pushkeys, pushers of logged-out devices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

WAIT_S = 30.0


class Gateway:
    """A push gateway that records notifications and can reject pushkeys."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reject: set[str] = set()
        self.failures = 0  # answer this many requests with HTTP 500 first
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/_matrix/push/v1/notify", self._notify)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/_matrix/push/v1/notify"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _notify(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.failures > 0:
            self.failures -= 1
            return web.json_response({"error": "try later"}, status=500)
        await self.received.put(body["notification"])
        keys = [d["pushkey"] for d in body["notification"]["devices"]]
        return web.json_response({"rejected": [k for k in keys if k in self.reject]})

    async def next(self, match: Any = None) -> dict[str, Any]:
        """The next notification (that ``match`` accepts), waiting up to WAIT_S."""
        while True:
            note = await asyncio.wait_for(self.received.get(), WAIT_S)
            if match is None or match(note):
                return note


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    gw = Gateway()
    await gw.start()
    yield gw
    await gw.stop()


def pusher_body(url: str, pushkey: str = "key1", **extra: Any) -> dict[str, Any]:
    return {
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": pushkey,
        "app_display_name": "Example",
        "device_display_name": "Phone",
        "profile_tag": "tag",
        "lang": "en",
        "data": {"url": url, "custom": "x"},
        **extra,
    }


async def set_pusher(api: Api, user: User, body: dict[str, Any]) -> None:
    r = await api.post("/pushers/set", body, token=user.access_token)
    assert r.status == 200, r.body


def is_type(event_type: str) -> Any:
    return lambda n: n.get("type") == event_type


async def test_pusher_registration_rules(api: Api) -> None:
    alice = await api.register("alice")
    url = "https://push.example.org/_matrix/push/v1/notify"
    await set_pusher(api, alice, pusher_body(url))
    r = await api.get("/pushers", token=alice.access_token)
    assert r.body == {
        "pushers": [
            {
                "kind": "http",
                "app_id": "org.example.app",
                "pushkey": "key1",
                "app_display_name": "Example",
                "device_display_name": "Phone",
                "profile_tag": "tag",
                "lang": "en",
                "data": {"url": url, "custom": "x"},
            }
        ]
    }
    for bad in (
        {**pusher_body(url), "data": {}},
        {**pusher_body(url), "data": {"url": "https://push.example.org/elsewhere"}},
        {**pusher_body(url), "kind": "carrier-pigeon"},
        {k: v for k, v in pusher_body(url).items() if k != "app_id"},
    ):
        r = await api.post("/pushers/set", bad, token=alice.access_token)
        assert r.status == 400, bad
    await set_pusher(api, alice, {**pusher_body(url), "kind": None})
    assert (await api.get("/pushers", token=alice.access_token)).body == {"pushers": []}


async def test_messages_invites_and_badges_reach_the_gateway(api: Api, gateway: Gateway) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    await set_pusher(api, alice, pusher_body(gateway.url))
    room_id = await create_room(api, bob, name="Lemurs")
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": alice.user_id}, token=bob.access_token
    )
    assert r.status == 200
    invite = await gateway.next(is_type("m.room.member"))
    assert invite["membership"] == "invite" and invite["user_is_target"] is True
    assert invite["room_id"] == room_id and invite["sender"] == bob.user_id
    assert invite["room_name"] == "Lemurs"
    [device] = invite["devices"]
    assert device["app_id"] == "org.example.app" and device["pushkey"] == "key1"
    assert device["data"] == {"custom": "x"}

    assert (await api.post(f"/join/{room_id}", {}, token=alice.access_token)).status == 200
    event_id = await send_text(api, bob, room_id, "hello alice", "t1")
    note = await gateway.next(is_type("m.room.message"))
    assert note["event_id"] == note["id"] == event_id
    assert note["content"]["body"] == "hello alice"
    assert note["counts"]["unread"] >= 1 and note["sender_display_name"] == "bob"

    r = await api.post(f"/rooms/{room_id}/receipt/m.read/{event_id}", {}, token=alice.access_token)
    assert r.status == 200
    badge = await gateway.next(lambda n: "event_id" not in n)
    assert badge["counts"]["unread"] == 0


async def test_rejected_pushkey_and_logged_out_device_lose_their_pusher(
    api: Api, gateway: Gateway
) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room_id = await create_room(api, bob, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=alice.access_token)).status == 200
    gateway.reject.add("gone")
    await set_pusher(api, alice, pusher_body(gateway.url, pushkey="gone"))
    await send_text(api, bob, room_id, "one", "t1")
    await gateway.next(is_type("m.room.message"))
    for _ in range(100):  # the deletion follows the gateway's answer
        if (await api.get("/pushers", token=alice.access_token)).body["pushers"] == []:
            break
        await asyncio.sleep(0.1)
    assert (await api.get("/pushers", token=alice.access_token)).body == {"pushers": []}

    other = (await api.login("alice", alice.password)).body["access_token"]
    r = await api.post("/pushers/set", pusher_body(gateway.url, "phone"), token=other)
    assert r.status == 200
    r = await api.post("/logout", {}, token=other)
    assert r.status == 200
    assert (await api.get("/pushers", token=alice.access_token)).body == {"pushers": []}
