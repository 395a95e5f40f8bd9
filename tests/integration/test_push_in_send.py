"""An ordinary message's push rows written in the send's own transaction, with the
evaluator's cursor (``PushEvaluator.evaluate_in``, SQLite): the woken /sync has no
evaluation to wait for, and the evaluator commits nothing for it. Whenever that is not
exactly the evaluator's next batch (the cursor behind, a membership change not yet
settled, PostgreSQL) the evaluator takes the event as before; counts stay exact."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from homeserver.app import RunningServer
from homeserver.storage.database import Database
from tests.helpers import Api
from tests.integration.test_push_background import counts, cursor, mention, push_rows, room_of_three
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync


def spy_batches(db: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the evaluator's batch commits (``write_batch(derived=True)``) and run them."""
    seen: list[int] = []
    real = db.write_batch

    async def write_batch(
        batch: Sequence[tuple[str, Sequence[Sequence[Any]]]], derived: bool = False
    ) -> None:
        if derived:
            seen.append(len(batch))
        await real(batch, derived)

    monkeypatch.setattr(db, "write_batch", write_batch)
    return seen


async def warm(server: RunningServer, api: Api, sender: Any, room_id: str, txn: str) -> None:
    """One message through the evaluator: its caches (members, spans) hold the room."""
    await send_text(api, sender, room_id, "warm", txn)
    assert await server.hs.sync_area.push_evaluator.caught_up()


async def test_a_message_commits_its_rows_and_the_cursor_with_itself(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await warm(server, api, alice, room_id, "w0")
    b0 = await sync(api, bob)
    batches = spy_batches(hs.db, monkeypatch)
    sent = await send_text(api, alice, room_id, "in the send", "s1")
    head = await hs.rooms_area.rooms.events.current_position()
    inline = hs.db.engine == "sqlite"
    if inline:
        # Answered: already evaluated, by the send's own commit.
        assert evaluator.position == head
        assert await cursor(hs.db) == head
        assert await push_rows(hs.db, sent) == sorted([bob.user_id, carol.user_id])
    await mention(api, carol, room_id, bob, "s2")  # bob's own row (a highlight)
    a = await sync(api, alice)
    b = await sync(api, bob, since=b0["next_batch"])
    assert counts(b, room_id) == {"notification_count": 3, "highlight_count": 1}
    assert counts(a, room_id) == {"notification_count": 1, "highlight_count": 0}
    if inline:
        assert batches == []  # the evaluator committed nothing for either
    else:
        assert batches


async def test_after_a_join_the_evaluator_takes_the_next_message_then_the_send(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    await warm(server, api, alice, room_id, "w0")
    dave = await api.register("dave")
    assert (await api.post(f"/join/{room_id}", {}, token=dave.access_token)).status == 200
    assert await hs.sync_area.push_evaluator.caught_up()
    batches = spy_batches(hs.db, monkeypatch)
    first = await send_text(api, alice, room_id, "after dave", "a1")
    assert await hs.sync_area.push_evaluator.caught_up()
    assert len(batches) == 1  # the join's membership change is settled by the evaluator
    second = await send_text(api, alice, room_id, "again", "a2")
    assert await hs.sync_area.push_evaluator.caught_up()
    assert len(batches) == (1 if hs.db.engine == "sqlite" else 2)
    for event_id in (first, second):
        assert dave.user_id in await push_rows(hs.db, event_id)
    d = await sync(api, dave)
    assert counts(d, room_id) == {"notification_count": 2, "highlight_count": 0}
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 3, "highlight_count": 0}


async def test_a_cursor_behind_the_send_leaves_the_message_to_the_evaluator(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Older positions are not evaluated yet (here one with no event, as a resync
    takes): the cursor may not jump over them, so the send writes no rows."""
    alice, bob, carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await warm(server, api, alice, room_id, "w0")
    async with hs.db.transaction() as q:
        await hs.rooms_area.rooms.events.next_stream_ordering(q)
    batches = spy_batches(hs.db, monkeypatch)
    sent = await send_text(api, alice, room_id, "after the gap", "g1")
    assert await evaluator.caught_up(await hs.rooms_area.rooms.events.current_position())
    assert len(batches) >= 1
    assert await push_rows(hs.db, sent) == sorted([bob.user_id, carol.user_id])
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 2, "highlight_count": 0}


async def test_a_send_that_rolls_back_moves_neither_rows_nor_cursor(
    server: RunningServer, api: Api
) -> None:
    """Rows and cursor commit or roll back with the event (acknowledged = durable)."""
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await warm(server, api, alice, room_id, "w0")
    before = await cursor(hs.db)
    persister = hs.rooms_area.rooms.persister

    async def fail(*_: Any) -> None:
        raise RuntimeError("the transaction fails after the push rows")

    persister.txn_hooks.append(fail)
    try:
        r = await api.put(
            f"/rooms/{room_id}/send/m.room.message/f1",
            {"msgtype": "m.text", "body": "lost"},
            token=alice.access_token,
        )
    finally:
        persister.txn_hooks.remove(fail)
    assert r.status == 500
    assert await cursor(hs.db) == before
    assert evaluator.position == before
    count = await hs.db.fetchval("SELECT COUNT(*) FROM event_push_shared")
    await send_text(api, alice, room_id, "kept", "f2")
    assert await evaluator.caught_up()
    assert await hs.db.fetchval("SELECT COUNT(*) FROM event_push_shared") == count + 1
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 2, "highlight_count": 0}
