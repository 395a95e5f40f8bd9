"""Simplified sliding sync (MSC4186): the extensions (to_device, e2ee, account_data,
receipts, typing), long-polls woken by each kind of change, and no event lost or
repeated between positions under concurrent sends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tests.helpers import Api, User
from tests.integration.e2ee_device import Device
from tests.integration.sliding_helpers import all_list, sliding_ok
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

ALL_EXTENSIONS = {
    "to_device": {"enabled": True},
    "e2ee": {"enabled": True},
    "account_data": {"enabled": True},
    "receipts": {"enabled": True},
    "typing": {"enabled": True},
}
LONG_POLL_MS = 60_000
WAIT_S = 30.0


def request(to_device_since: str | None = None) -> dict[str, Any]:
    ext: dict[str, Any] = {k: dict(v) for k, v in ALL_EXTENSIONS.items()}
    if to_device_since is not None:
        ext["to_device"]["since"] = to_device_since
    return {"lists": {"all": all_list(timeline_limit=20)}, "extensions": ext}


async def two_in_a_room(api: Api) -> tuple[User, User, str]:
    alice = await api.register("alice")
    bob = await api.register("bob")
    room = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room}", {}, token=bob.access_token)).status == 200
    return alice, bob, room


async def test_extensions_initial_and_incremental(api: Api) -> None:
    alice, bob, room = await two_in_a_room(api)
    dev = Device(bob.user_id, bob.device_id)
    r = await api.post(
        "/keys/upload",
        {
            "device_keys": dev.device_keys(),
            "one_time_keys": dev.one_time_keys(2),
            "fallback_keys": dev.fallback_key(),
        },
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    first = await sliding_ok(api, bob, request())
    ext = first["extensions"]
    assert ext["e2ee"]["device_one_time_keys_count"] == {"signed_curve25519": 2}
    assert ext["e2ee"]["device_unused_fallback_key_types"] == ["signed_curve25519"]
    assert ext["to_device"]["events"] == []
    assert any(e["type"] == "m.push_rules" for e in ext["account_data"]["global"])

    # One of each kind of change.
    msg = await send_text(api, alice, room, "hi", "t1")
    r = await api.put(
        "/sendToDevice/m.test/td1",
        {"messages": {bob.user_id: {bob.device_id: {"n": 1}}}},
        token=alice.access_token,
    )
    assert r.status == 200
    await api.put(
        f"/user/{bob.user_id}/account_data/org.example.global", {"a": 1}, token=bob.access_token
    )
    await api.put(
        f"/user/{bob.user_id}/rooms/{room}/account_data/org.example.room",
        {"b": 2},
        token=bob.access_token,
    )
    r = await api.post(f"/rooms/{room}/receipt/m.read/{msg}", {}, token=alice.access_token)
    assert r.status == 200, r.body
    r = await api.put(
        f"/rooms/{room}/typing/{alice.user_id}",
        {"typing": True, "timeout": 30000},
        token=alice.access_token,
    )
    assert r.status == 200
    alice_dev = Device(alice.user_id, alice.device_id)
    r = await api.post(
        "/keys/upload", {"device_keys": alice_dev.device_keys()}, token=alice.access_token
    )
    assert r.status == 200

    second = await sliding_ok(
        api, bob, request(first["extensions"]["to_device"]["next_batch"]), first["pos"]
    )
    ext = second["extensions"]
    assert [e["content"] for e in ext["to_device"]["events"]] == [{"n": 1}]
    assert ext["e2ee"]["device_lists"]["changed"] == [alice.user_id]
    assert [e["type"] for e in ext["account_data"]["global"]] == ["org.example.global"]
    assert ext["account_data"]["rooms"] == {
        room: [{"type": "org.example.room", "content": {"b": 2}}]
    }
    receipt = ext["receipts"]["rooms"][room]
    assert receipt["type"] == "m.receipt"
    assert alice.user_id in receipt["content"][msg]["m.read"]
    assert ext["typing"]["rooms"][room] == {
        "type": "m.typing",
        "content": {"user_ids": [alice.user_id]},
    }
    # The next to-device token acknowledges the message: it is not sent again.
    third = await sliding_ok(api, bob, request(ext["to_device"]["next_batch"]), second["pos"])
    assert third["extensions"]["to_device"]["events"] == []


Change = Callable[[Api, User, User, str], Awaitable[None]]


async def _message(api: Api, alice: User, bob: User, room: str) -> None:
    await send_text(api, alice, room, "wake", "w1")


async def _invite(api: Api, alice: User, bob: User, room: str) -> None:
    other = await create_room(api, alice)
    r = await api.post(f"/rooms/{other}/invite", {"user_id": bob.user_id}, token=alice.access_token)
    assert r.status == 200


async def _to_device(api: Api, alice: User, bob: User, room: str) -> None:
    r = await api.put(
        "/sendToDevice/m.test/w1",
        {"messages": {bob.user_id: {bob.device_id: {"x": 1}}}},
        token=alice.access_token,
    )
    assert r.status == 200


async def _account_data(api: Api, alice: User, bob: User, room: str) -> None:
    r = await api.put(
        f"/user/{bob.user_id}/account_data/org.example.x", {"x": 1}, token=bob.access_token
    )
    assert r.status == 200


async def _receipt(api: Api, alice: User, bob: User, room: str) -> None:
    state = await api.get(
        f"/rooms/{room}/messages", token=alice.access_token, params={"dir": "b", "limit": "1"}
    )
    event_id = state.body["chunk"][0]["event_id"]
    r = await api.post(f"/rooms/{room}/receipt/m.read/{event_id}", {}, token=alice.access_token)
    assert r.status == 200


async def _typing(api: Api, alice: User, bob: User, room: str) -> None:
    r = await api.put(
        f"/rooms/{room}/typing/{alice.user_id}",
        {"typing": True, "timeout": 30000},
        token=alice.access_token,
    )
    assert r.status == 200


async def _device_list(api: Api, alice: User, bob: User, room: str) -> None:
    dev = Device(alice.user_id, alice.device_id)
    r = await api.post("/keys/upload", {"device_keys": dev.device_keys()}, token=alice.access_token)
    assert r.status == 200


async def test_each_kind_of_change_wakes_a_long_poll(api: Api) -> None:
    alice, bob, room = await two_in_a_room(api)
    changes: list[tuple[str, Change]] = [
        ("message", _message),
        ("invite", _invite),
        ("to_device", _to_device),
        ("account_data", _account_data),
        ("receipt", _receipt),
        ("typing", _typing),
        ("device_list", _device_list),
    ]
    out = await sliding_ok(api, bob, request())
    td = out["extensions"]["to_device"]["next_batch"]
    pos = out["pos"]
    for name, change in changes:
        poll = asyncio.create_task(sliding_ok(api, bob, request(td), pos, LONG_POLL_MS))
        await asyncio.sleep(0.2)
        assert not poll.done(), name
        await change(api, alice, bob, room)
        out = await asyncio.wait_for(poll, WAIT_S)
        assert out["pos"] != pos, name
        pos = out["pos"]
        td = out["extensions"]["to_device"]["next_batch"]


async def test_an_empty_long_poll_answers_at_its_timeout(api: Api) -> None:
    alice = await api.register("alice")
    out = await sliding_ok(api, alice, request())
    again = await sliding_ok(api, alice, request(), out["pos"], timeout_ms=300)
    assert again["rooms"] == {}
    assert again["pos"] == out["pos"]


async def test_no_event_lost_or_repeated_under_concurrent_sends(api: Api) -> None:
    alice, bob, room = await two_in_a_room(api)
    carol = await api.register("carol")
    assert (await api.post(f"/join/{room}", {}, token=carol.access_token)).status == 200
    body = {"lists": {"all": all_list(timeline_limit=100)}}
    out = await sliding_ok(api, bob, body)
    pos = out["pos"]
    seen: list[str] = []
    per_sender = 40

    async def sender(user: User, tag: str) -> list[str]:
        return [
            await send_text(api, user, room, f"{tag}{i}", f"{tag}{i}") for i in range(per_sender)
        ]

    sending = asyncio.gather(sender(alice, "a"), sender(carol, "c"))
    rounds = 0
    deadline = time.monotonic() + 120
    while rounds < 500 and time.monotonic() < deadline:
        rounds += 1
        out = await sliding_ok(api, bob, body, pos, timeout_ms=2000)
        pos = out["pos"]
        r = out["rooms"].get(room)
        if r is not None:
            assert r["limited"] is False
            seen.extend(e["event_id"] for e in r["timeline"])
        if sending.done() and len(seen) >= 2 * per_sender:
            break
    sent_a, sent_c = await sending
    assert len(seen) == len(set(seen)), "an event was sent twice"
    assert set(seen) == set(sent_a) | set(sent_c)
