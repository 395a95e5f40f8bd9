"""Every room version 1-12 over real HTTP: id formats, messages, state, membership,
redactions, reading single events (v3 ids contain ``/`` and ``+``) and upgrades
from each version to each later one."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import pytest

from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room

VERSIONS = [str(n) for n in range(1, 13)]


def id_pattern(version: str, server: str) -> re.Pattern[str]:
    """The event id grammar of each version (rooms "Event IDs")."""
    if int(version) <= 2:
        return re.compile(r"\$[^:]+:" + re.escape(server))
    if version == "3":
        return re.compile(r"\$[A-Za-z0-9+/]{43}")
    return re.compile(r"\$[A-Za-z0-9_\-]{43}")


async def ok(reply: Any) -> Any:
    assert reply.status == 200, reply.body
    return reply.body


async def send(api: Api, user: User, room: str, body: str, txn: str) -> str:
    path = f"/rooms/{quote(room)}/send/m.room.message/{txn}"
    reply = await ok(
        await api.put(path, {"msgtype": "m.text", "body": body}, token=user.access_token)
    )
    event_id: str = reply["event_id"]
    return event_id


async def get_event(api: Api, user: User, room: str, event_id: str) -> Any:
    path = f"/rooms/{quote(room)}/event/{quote(event_id, safe='')}"
    return await api.get(path, token=user.access_token)


@pytest.mark.parametrize("version", VERSIONS)
async def test_room_life_in_each_version(api: Api, version: str) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    server = alice.user_id.split(":", 1)[1]
    room = await create_room(api, alice, room_version=version, preset="public_chat")
    await ok(await api.post(f"/rooms/{quote(room)}/join", {}, token=bob.access_token))

    pattern = id_pattern(version, server)
    ids = [await send(api, bob, room, f"message {n}", f"t{n}") for n in range(24)]
    assert all(pattern.fullmatch(i) for i in ids), ids[:3]
    if version == "3":
        # Enough ids that some carry the characters URL paths must escape.
        assert any("/" in i or "+" in i for i in ids)
    for event_id in ids:
        event = await ok(await get_event(api, alice, room, event_id))
        assert event["event_id"] == event_id
        assert "prev_events" not in event  # client format, whatever the version

    # State and a redaction by the room admin.
    topic = await ok(
        await api.put(
            f"/rooms/{quote(room)}/state/m.room.topic/", {"topic": "t"}, token=alice.access_token
        )
    )
    assert pattern.fullmatch(topic["event_id"])
    target = next((i for i in ids if "/" in i), ids[0])
    path = f"/rooms/{quote(room)}/redact/{quote(target, safe='')}/r1"
    redaction = await ok(await api.put(path, {"reason": "spam"}, token=alice.access_token))
    assert pattern.fullmatch(redaction["event_id"])
    event = await ok(await get_event(api, bob, room, target))
    assert event["content"] == {}
    assert event["unsigned"]["redacted_because"]["event_id"] == redaction["event_id"]
    assert event["unsigned"]["redacted_by"] == redaction["event_id"]

    # Membership: kick, invite back, ban.
    base = f"/rooms/{quote(room)}"
    await ok(await api.post(f"{base}/kick", {"user_id": bob.user_id}, token=alice.access_token))
    await ok(await api.post(f"{base}/invite", {"user_id": bob.user_id}, token=alice.access_token))
    await ok(await api.post(f"{base}/join", {}, token=bob.access_token))
    await ok(await api.post(f"{base}/ban", {"user_id": bob.user_id}, token=alice.access_token))
    r = await api.post(f"{base}/join", {}, token=bob.access_token)
    assert r.status == 403 and r.errcode == "M_FORBIDDEN"

    # History reads back in order, in every version.
    r = await ok(
        await api.get(
            f"{base}/messages", token=alice.access_token, params={"dir": "b", "limit": "100"}
        )
    )
    bodies = [e["content"].get("body") for e in r["chunk"] if e["type"] == "m.room.message"]
    redacted_index = ids.index(target)
    assert bodies == [
        None if n == redacted_index else f"message {n}" for n in reversed(range(len(ids)))
    ]


@pytest.mark.parametrize("version", ["6", "7", "8", "9"])
async def test_knock_and_restricted_follow_the_version(api: Api, version: str) -> None:
    alice = await api.register("alice")
    carol = await api.register("carol")
    room = await create_room(api, alice, room_version=version, preset="private_chat")
    base = f"/rooms/{quote(room)}"
    r = await api.put(
        f"{base}/state/m.room.join_rules/", {"join_rule": "knock"}, token=alice.access_token
    )
    assert r.status == 200, r.body
    r = await api.post(f"/knock/{quote(room)}", {}, token=carol.access_token)
    if int(version) >= 7:
        assert r.status == 200, r.body
    else:
        assert r.status == 403 and r.errcode == "M_FORBIDDEN"


@pytest.mark.parametrize(
    ("old", "new"),
    [(o, n) for o in VERSIONS for n in VERSIONS if int(n) > int(o) and (int(o) + int(n)) % 3 == 0]
    + [("1", "2"), ("2", "3"), ("3", "4"), ("9", "10"), ("1", "12")],
)
async def test_upgrade_to_any_later_version(api: Api, old: str, new: str) -> None:
    alice = await api.register("alice")
    room = await create_room(api, alice, room_version=old, preset="public_chat", name="Old")
    r = await api.post(
        f"/rooms/{quote(room)}/upgrade", {"new_version": new}, token=alice.access_token
    )
    body = await ok(r)
    replacement = body["replacement_room"]
    create = await ok(
        await api.get(f"/rooms/{quote(replacement)}/state/m.room.create/", token=alice.access_token)
    )
    assert create["room_version"] == new
    assert create["predecessor"]["room_id"] == room
    tomb = await ok(
        await api.get(f"/rooms/{quote(room)}/state/m.room.tombstone/", token=alice.access_token)
    )
    assert tomb["replacement_room"] == replacement
    name = await ok(
        await api.get(f"/rooms/{quote(replacement)}/state/m.room.name/", token=alice.access_token)
    )
    assert name == {"name": "Old"}


@pytest.mark.parametrize("version", ["1", "5", "6", "12"])
async def test_local_users_send_canonical_json_in_every_version(api: Api, version: str) -> None:
    """v1-v5 accept off-spec JSON over federation; our own users still get M_BAD_JSON."""
    alice = await api.register("alice")
    room = await create_room(api, alice, room_version=version)
    path = f"/rooms/{quote(room)}/send/m.room.message/f1"
    for bad in ({"body": "x", "n": 1.5}, {"body": "x", "n": 2**60}):
        r = await api.put(path, bad, token=alice.access_token)
        assert r.status == 400 and r.errcode == "M_BAD_JSON", (bad, r.body)
    r = await api.put(path, {"body": "x", "n": 2}, token=alice.access_token)
    assert r.status == 200, r.body


async def test_historical_user_ids_can_be_banned_and_unbanned(api: Api) -> None:
    """Appendices "Historical User IDs": old rooms' remote users may have localparts
    outside today's grammar; servers MUST accept them."""
    alice = await api.register("alice")
    room = await create_room(api, alice, room_version="1")
    base = f"/rooms/{quote(room)}"
    for target in ("@__ANON__-7:remote.example", "@Old.User:remote.example"):
        await ok(await api.post(f"{base}/ban", {"user_id": target}, token=alice.access_token))
        await ok(await api.post(f"{base}/unban", {"user_id": target}, token=alice.access_token))
    r = await api.post(f"{base}/ban", {"user_id": "@bad:id:x"}, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
