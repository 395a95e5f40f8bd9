"""Push evaluation reads the few state keys it needs (power levels, the sender's
membership, ...) of each event's state group; ``StateStore.state_keys_at_group`` keeps
them per (group, key), so a second message in an unchanged room reads no state (a read
behind every send that a woken /sync's unread counts wait for). A state change makes a
new group: the rules then see the new state at once."""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from homeserver.storage.database import count_statements
from tests.helpers import Api, User
from tests.integration.sync_support import count
from tests.integration.test_push_background import counts, room_of_three
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync

# The recursive walk of a state group's chain (rooms/store/state_store.py ``_CHAIN``).
CHAIN_READ = "WITH RECURSIVE chain"


async def _room_notification_level(api: Api, alice: User, room_id: str, level: int) -> None:
    path = f"/rooms/{room_id}/state/m.room.power_levels"
    r = await api.get(path, token=alice.access_token)
    assert r.status == 200, r.body
    content: dict[str, Any] = dict(r.body)
    content["notifications"] = {"room": level}
    r = await api.put(path, content, token=alice.access_token)
    assert r.status == 200, r.body


async def _room_mention(api: Api, sender: User, room_id: str, txn: str) -> None:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": "@room", "m.mentions": {"room": True}},
        token=sender.access_token,
    )
    assert r.status == 200, r.body


async def test_push_rules_read_a_groups_keys_once_and_see_a_state_change(
    server: RunningServer, api: Api
) -> None:
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    notifications = hs.sync_area.notifications
    events = hs.rooms_area.rooms.events

    first = await events.by_id(await send_text(api, bob, room_id, "one", "k1"))
    second = await events.by_id(await send_text(api, bob, room_id, "two", "k2"))
    assert first is not None and second is not None
    assert first.state_group == second.state_group
    await notifications.rows_for(first)  # the group's keys read (or already kept)
    with count_statements() as counter:
        await notifications.rows_for(second)
    assert count(counter, CHAIN_READ) == 0, counter.by_sql

    # Bob (power 0) may not notify the whole room at the default level (50): his
    # room mention does not highlight for alice; once the level is 0 (a new state group), it
    # does at once, and back at 50 it no longer does.
    since = (await sync(api, alice))["next_batch"]
    await _room_mention(api, bob, room_id, "r1")
    body = await sync(api, alice, since=since)
    assert counts(body, room_id)["highlight_count"] == 0
    await _room_notification_level(api, alice, room_id, 0)
    await _room_mention(api, bob, room_id, "r2")
    body = await sync(api, alice, since=since)
    assert counts(body, room_id)["highlight_count"] == 1
    await _room_notification_level(api, alice, room_id, 50)
    await _room_mention(api, bob, room_id, "r3")
    body = await sync(api, alice, since=since)
    assert counts(body, room_id)["highlight_count"] == 1
