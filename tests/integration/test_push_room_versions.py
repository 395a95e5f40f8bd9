"""Push in every supported room version: the sender's power comes from the one rule
(rooms/auth/power_levels.py), so a v12 creator's @room highlights. (Counts across a
crash before evaluation: test_push_background.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_sync_sections import sync

VERSIONS = sorted(KNOWN_ROOM_VERSIONS, key=int)


def counts(body: dict[str, Any], room_id: str) -> dict[str, int]:
    c: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return c


async def at_room(api: Api, user: User, room_id: str, txn: str) -> str:
    """An ``@room`` mention, both the legacy body form and ``m.mentions``."""
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": "@room look", "m.mentions": {"room": True}},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    event_id: str = r.body["event_id"]
    return event_id


async def set_level(api: Api, admin: User, room_id: str, user: User, level: int) -> None:
    path = f"/rooms/{room_id}/state/m.room.power_levels/"
    r = await api.get(path, token=admin.access_token)
    assert r.status == 200, r.body
    content = r.body
    content.setdefault("users", {})[user.user_id] = level
    r = await api.put(path, content, token=admin.access_token)
    assert r.status == 200, r.body


@pytest.mark.parametrize("version", VERSIONS)
async def test_room_mention_highlights_by_sender_power(api: Api, version: str) -> None:
    alice = await api.register("alice")  # the creator
    bob = await api.register("bob")  # reads
    carol = await api.register("carol")  # moderator (50)
    dave = await api.register("dave")  # default power (0)
    room_id = await create_room(api, alice, preset="public_chat", room_version=version)
    for user in (bob, carol, dave):
        assert (await api.post(f"/join/{room_id}", {}, token=user.access_token)).status == 200
    await set_level(api, alice, room_id, carol, 50)
    b0 = await sync(api, bob)
    assert counts(b0, room_id) == {"notification_count": 0, "highlight_count": 0}

    await at_room(api, alice, room_id, "a1")
    b1 = await sync(api, bob, b0["next_batch"])
    # v12: the creator has no entry in "users" yet outranks everyone.
    assert counts(b1, room_id) == {"notification_count": 1, "highlight_count": 1}

    await at_room(api, carol, room_id, "c1")
    b2 = await sync(api, bob, b1["next_batch"])
    assert counts(b2, room_id) == {"notification_count": 2, "highlight_count": 2}

    await at_room(api, dave, room_id, "d1")
    b3 = await sync(api, bob, b2["next_batch"])
    # Below the "room" notification level (50): notifies, never highlights.
    assert counts(b3, room_id) == {"notification_count": 3, "highlight_count": 2}

    # Raising the "room" notification level above the moderator takes theirs away;
    # the creator keeps it in v12 (infinite power) and with 100 before.
    path = f"/rooms/{room_id}/state/m.room.power_levels/"
    pl = (await api.get(path, token=alice.access_token)).body
    pl["notifications"] = {"room": 75}
    assert (await api.put(path, pl, token=alice.access_token)).status == 200
    await at_room(api, carol, room_id, "c2")
    await at_room(api, alice, room_id, "a2")
    b4 = await sync(api, bob, b3["next_batch"])
    assert counts(b4, room_id) == {"notification_count": 5, "highlight_count": 3}
