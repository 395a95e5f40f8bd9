"""Push rules evaluated behind the send (homeserver/push/evaluation.py): counts read by
/sync and /notifications stay exact although the send answered before evaluation; a
member who joined after an event is not notified of it however late evaluation runs;
events persisted but not evaluated when the process stopped are evaluated after the
restart, and their notifications still reach an HTTP pusher; an event whose evaluation
keeps failing is passed over instead of holding every later count."""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from homeserver.push.actions_store import PushActionRow
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Database
from tests.conftest import RestartFn, ServerFactory
from tests.helpers import Api, User
from tests.integration.test_push_delivery import gateway as gateway
from tests.integration.test_pushers import Gateway, is_type, pusher_body, set_pusher
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync


def counts(body: dict[str, Any], room_id: str) -> dict[str, int]:
    c: dict[str, int] = body["rooms"]["join"][room_id]["unread_notifications"]
    return c


async def mention(api: Api, sender: User, room_id: str, target: User, txn: str) -> str:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{txn}",
        {"msgtype": "m.text", "body": "look", "m.mentions": {"user_ids": [target.user_id]}},
        token=sender.access_token,
    )
    assert r.status == 200, r.body
    event_id: str = r.body["event_id"]
    return event_id


async def push_rows(db: Database, event_id: str) -> list[str]:
    """Who the event notifies or highlights: members' own rows that do, and the members
    its shared row covers (joined at it, not the sender, no row of their own)."""
    rows = await db.fetchall(
        "SELECT p.user_id FROM event_push_actions p JOIN events e ON e.event_nid = p.event_nid"
        " WHERE e.event_id = $1 AND (p.notify = 1 OR p.highlight = 1)"
        " UNION ALL SELECT m.user_id FROM event_push_shared s"
        " JOIN events e ON e.event_nid = s.event_nid"
        " JOIN push_member_spans m ON m.room_nid = s.room_nid"
        " AND m.start_so <= s.stream_ordering"
        " AND (m.end_so IS NULL OR m.end_so > s.stream_ordering)"
        " WHERE e.event_id = $1 AND m.user_id <> s.sender AND NOT EXISTS"
        " (SELECT 1 FROM event_push_actions p WHERE p.user_id = m.user_id"
        " AND p.event_nid = s.event_nid)",
        event_id,
    )
    return sorted(str(r["user_id"]) for r in rows)


async def cursor(db: Database) -> int:
    value = await db.fetchval(
        "SELECT position FROM stream_positions WHERE stream_name = 'push_evaluated'"
    )
    return int(value)


async def room_of_three(api: Api) -> tuple[User, User, User, str]:
    alice = await api.register("alice")
    bob = await api.register("bob")
    carol = await api.register("carol")
    room_id = await create_room(api, alice, preset="public_chat")
    for user in (bob, carol):
        assert (await api.post(f"/join/{room_id}", {}, token=user.access_token)).status == 200
    return alice, bob, carol, room_id


async def test_counts_are_exact_right_after_each_send(api: Api) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    b0 = await sync(api, bob)
    assert counts(b0, room_id) == {"notification_count": 0, "highlight_count": 0}
    since = b0["next_batch"]
    expected = (0, 0)
    for i in range(4):
        # Each sync follows its send at once: the counts must already include it.
        if i == 2:
            await mention(api, carol, room_id, bob, f"m{i}")
            expected = (expected[0] + 1, expected[1] + 1)
        else:
            await send_text(api, alice, room_id, f"message {i}", f"t{i}")
            expected = (expected[0] + 1, expected[1])
        body = await sync(api, bob, since)
        assert counts(body, room_id) == {
            "notification_count": expected[0],
            "highlight_count": expected[1],
        }
        since = body["next_batch"]
    # The sender's own messages never count for them; carol counts alice's three.
    c = await sync(api, carol)
    assert counts(c, room_id) == {"notification_count": 3, "highlight_count": 0}
    notes = (await api.get("/notifications", token=bob.access_token)).body["notifications"]
    assert len(notes) == 4
    assert [n["event"]["content"]["body"] for n in notes][:2] == ["message 3", "look"]
    assert sum(1 for n in notes if {"set_tweak": "highlight"} in n["actions"]) == 1


async def test_member_joining_before_evaluation_is_not_notified_of_older_events(
    server: RunningServer, api: Api
) -> None:
    alice, bob, _carol, room_id = await room_of_three(api)
    dave = await api.register("dave")
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await evaluator.stop()  # evaluation falls behind the stream
    before = await send_text(api, alice, room_id, "before dave", "b1")
    assert (await api.post(f"/join/{room_id}", {}, token=dave.access_token)).status == 200
    after = await send_text(api, alice, room_id, "after dave", "a1")
    assert await push_rows(hs.db, before) == []  # persisted, answered, not evaluated
    hs.background.append(evaluator.start())
    d = await sync(api, dave)
    assert counts(d, room_id) == {"notification_count": 1, "highlight_count": 0}
    assert await push_rows(hs.db, before) == sorted([bob.user_id, _carol.user_id])
    assert await push_rows(hs.db, after) == sorted([bob.user_id, _carol.user_id, dave.user_id])


async def test_events_left_unevaluated_by_a_stop_are_evaluated_after_restart(
    make_server: ServerFactory,
    restart_server: RestartFn,
    gateway: Gateway,
) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice, bob, carol, room_id = await room_of_three(api)
        await set_pusher(api, bob, pusher_body(gateway.url))
        hs = server.hs
        # The process "dies" after the sends committed, before any was evaluated.
        await hs.sync_area.push_evaluator.stop()
        evaluated = await cursor(hs.db)
        sent = [
            await send_text(api, alice, room_id, "one", "c1"),
            await mention(api, carol, room_id, bob, "c2"),
            await send_text(api, carol, room_id, "three", "c3"),
        ]
        for event_id in sent:
            assert await push_rows(hs.db, event_id) == []
        assert await cursor(hs.db) == evaluated
    server = await restart_server(server)
    async with Api(server.client_url) as api:
        b = await sync(api, bob)
        assert counts(b, room_id) == {"notification_count": 3, "highlight_count": 1}
        notes = [await gateway.next(is_type("m.room.message")) for _ in range(3)]
        assert [n["content"]["body"] for n in notes] == ["one", "look", "three"]
        assert (
            await cursor(server.hs.db) >= await server.hs.rooms_area.rooms.events.current_position()
        )
        # And it keeps up with new sends after the restart.
        await send_text(api, alice, room_id, "four", "c4")
        b2 = await sync(api, bob, b["next_batch"])
        assert counts(b2, room_id) == {"notification_count": 4, "highlight_count": 1}


async def test_an_event_whose_evaluation_keeps_failing_does_not_hold_the_others(
    server: RunningServer, api: Api
) -> None:
    """A bug that one event's content triggers in rule evaluation: after a few tries
    the event is passed over (no rows), and the events after it are counted."""
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    notifications = hs.sync_area.notifications
    evaluator = hs.sync_area.push_evaluator
    real = notifications.rows_for
    poison: set[str] = set()

    async def failing(stored: StoredEvent) -> list[PushActionRow]:
        if stored.event.event_id in poison:
            raise RuntimeError("evaluation bug")
        return await real(stored)

    notifications.rows_for = failing  # type: ignore[method-assign]
    await evaluator.stop()
    # An event before it in the same batch evaluates fine on every try of the batch:
    # that must not reset the failing one's count (it would then be tried for ever).
    await send_text(api, alice, room_id, "before", "p0")
    poison.add(await send_text(api, alice, room_id, "poison", "p1"))
    good = await send_text(api, alice, room_id, "fine", "p2")
    hs.background.append(evaluator.start())
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 2, "highlight_count": 0}
    assert await push_rows(hs.db, good) == sorted([bob.user_id, _carol.user_id])


async def test_a_position_without_an_event_does_not_hold_readers(
    server: RunningServer, api: Api
) -> None:
    """A stream position taken with no event (a partial-state room made whole takes
    one for /sync) is stepped over: readers waiting for it are answered at once,
    not after the evaluator's wait limit with counts reported as lagging."""
    alice, _bob, _carol, room_id = await room_of_three(api)
    await send_text(api, alice, room_id, "hello", "p1")
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    assert await evaluator.caught_up(await hs.rooms_area.rooms.events.current_position())
    async with hs.db.transaction() as q:
        position = await hs.rooms_area.rooms.events.next_stream_ordering(q)
    assert await evaluator.caught_up(position)
    assert await cursor(hs.db) >= position
