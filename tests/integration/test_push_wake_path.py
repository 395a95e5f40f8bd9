"""The push evaluator on the path from a send to its woken /sync (push/evaluation.py):
a step after sends of this process takes their positions from memory, reading neither
the stream's position nor the pending events; a position it does not know (one with no
event) sends it back to the database; more known events than a batch are all
evaluated, batch by batch, in stream order. ``settle`` (a /sync waits with it before it
reads) waits for the evaluation of what this process persisted, without a statement."""

from __future__ import annotations

import asyncio

import pytest

from homeserver.app import RunningServer
from homeserver.push import evaluation
from homeserver.storage.database import StatementCounter, count_statements
from tests.helpers import Api
from tests.integration.test_push_background import counts, cursor, push_rows, room_of_three
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync

_PENDING = " ".join(evaluation._PENDING.split())
_EVENTS_HEAD = "SELECT position FROM stream_positions WHERE stream_name = 'events'"


async def stop_caught_up(evaluator: evaluation.PushEvaluator) -> None:
    """Stop the runner once the room's set-up is evaluated: what the test sends next is
    all the step sees (a set-up join still pending would make it report more to do)."""
    assert await evaluator.caught_up()
    await evaluator.stop()


def read_the_stream(counter: StatementCounter) -> bool:
    return counter.by_sql[_PENDING] > 0 or counter.by_sql[_EVENTS_HEAD] > 0


async def test_a_step_after_local_sends_reads_no_pending_events(
    server: RunningServer, api: Api
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await stop_caught_up(evaluator)  # the step below runs here, counted
    one = await send_text(api, alice, room_id, "one", "w1")
    two = await send_text(api, alice, room_id, "two", "w2")
    with count_statements() as counter:
        assert await evaluator.step() is False
    assert not read_the_stream(counter), counter.by_sql
    head = await hs.rooms_area.rooms.events.current_position()
    assert await cursor(hs.db) == head
    assert evaluator.position == head
    for event_id in (one, two):
        assert await push_rows(hs.db, event_id) == sorted([bob.user_id, carol.user_id])
    hs.background.append(evaluator.start())
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 2, "highlight_count": 0}


async def test_a_position_without_an_event_sends_the_step_to_the_database(
    server: RunningServer, api: Api
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await stop_caught_up(evaluator)
    async with hs.db.transaction() as q:  # a position no event holds (as a resync takes)
        await hs.rooms_area.rooms.events.next_stream_ordering(q)
    sent = await send_text(api, alice, room_id, "after the gap", "g1")
    with count_statements() as counter:
        assert await evaluator.step() is False
    assert counter.by_sql[_PENDING] == 1, counter.by_sql
    head = await hs.rooms_area.rooms.events.current_position()
    assert await cursor(hs.db) == head
    assert await push_rows(hs.db, sent) == sorted([bob.user_id, carol.user_id])
    # Back in memory for the next sends.
    later = await send_text(api, alice, room_id, "later", "g2")
    with count_statements() as counter:
        assert await evaluator.step() is False
    assert not read_the_stream(counter), counter.by_sql
    assert await push_rows(hs.db, later) == sorted([bob.user_id, carol.user_id])
    hs.background.append(evaluator.start())


async def test_known_events_beyond_a_batch_are_evaluated_batch_by_batch(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob, carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await stop_caught_up(evaluator)
    start = await cursor(hs.db)
    sent = [await send_text(api, alice, room_id, f"m{i}", f"b{i}") for i in range(5)]
    monkeypatch.setattr(evaluation, "BATCH", 3)
    with count_statements() as counter:
        assert await evaluator.step() is True  # three of five: more to do
        assert await cursor(hs.db) == start + 3
        assert await push_rows(hs.db, sent[3]) == []  # not yet: stream order
        assert await evaluator.step() is False
    assert not read_the_stream(counter), counter.by_sql
    assert await cursor(hs.db) == start + 5
    for event_id in sent:
        assert await push_rows(hs.db, event_id) == sorted([bob.user_id, carol.user_id])
    monkeypatch.undo()
    hs.background.append(evaluator.start())
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 5, "highlight_count": 0}


async def test_a_reader_waits_for_its_bound_not_for_later_events(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A /sync's counts wait for the events up to its upper bound only: an event
    committed after it (not evaluated yet) does not hold it. Without a bound (the
    pushers' badge) a reader still waits for everything this process persisted."""
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    events = hs.rooms_area.rooms.events
    bound = await events.current_position()
    assert await evaluator.caught_up(bound)
    await evaluator.stop()  # what is sent now stays unevaluated
    await send_text(api, alice, room_id, "after the bound", "l1")
    monkeypatch.setattr(evaluation, "WAIT_S", 0.05)  # the lagging answer comes at once
    assert await evaluator.caught_up(bound) is True
    assert await evaluator.caught_up() is False  # the later event is not evaluated
    assert await evaluator.caught_up(await events.current_position()) is False
    monkeypatch.undo()
    hs.background.append(evaluator.start())
    assert await evaluator.caught_up()
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 1, "highlight_count": 0}


async def test_settle_waits_for_the_evaluation_of_local_sends_and_reads_nothing(
    server: RunningServer, api: Api
) -> None:
    alice, bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await stop_caught_up(evaluator)
    await send_text(api, alice, room_id, "to settle", "s1")
    sent_at = await hs.rooms_area.rooms.events.current_position()
    assert evaluator.persisted == sent_at
    with count_statements() as counter:
        await evaluator.settle()  # not running here: returns at once, no cursor read
    assert counter.total == 0, counter.by_sql
    assert evaluator.position is not None and evaluator.position < sent_at
    async with hs.db.transaction() as q:
        # The writer is held: the evaluator's batch (started now) waits behind it.
        await q.execute("UPDATE stream_positions SET position = position WHERE 1 = 0")
        hs.background.append(evaluator.start())
        settling = asyncio.ensure_future(evaluator.settle())
        for _ in range(20):
            await asyncio.sleep(0)
        assert not settling.done()  # the send's rows are not committed yet
    await settling
    assert evaluator.position is not None and evaluator.position >= sent_at
    assert await cursor(hs.db) >= sent_at
    b = await sync(api, bob)
    assert counts(b, room_id) == {"notification_count": 1, "highlight_count": 0}


async def test_settle_does_not_wait_for_a_backlog(
    server: RunningServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than a batch behind (a burst of federation events), a /sync reads at once:
    one that needs no counts must not wait for all of it."""
    alice, _bob, _carol, room_id = await room_of_three(api)
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    await stop_caught_up(evaluator)
    for i in range(3):
        await send_text(api, alice, room_id, f"burst {i}", f"k{i}")
    monkeypatch.setattr(evaluation, "BATCH", 2)
    monkeypatch.setattr(evaluation, "SETTLE_S", 60.0)  # a wait would outlast the bound below
    async with hs.db.transaction() as q:  # the evaluator cannot commit meanwhile
        await q.execute("UPDATE stream_positions SET position = position WHERE 1 = 0")
        hs.background.append(evaluator.start())
        assert evaluator.position is not None
        assert evaluator.persisted - evaluator.position == 3
        await asyncio.wait_for(evaluator.settle(), 5)  # returns without the commit
        assert evaluator.persisted - evaluator.position == 3
    monkeypatch.undo()
    assert await evaluator.caught_up()
