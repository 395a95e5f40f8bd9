"""A send with a client txn id: the id is looked up once (by the chain builder, under the
room's lock), and retries, however concurrent, all answer with the one event it sent."""

from __future__ import annotations

import asyncio

from homeserver.app import RunningServer
from homeserver.rooms.persist import TxnRef
from homeserver.storage.database import count_statements
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_send_batches import rooms_of, send

# Statements of one plain message send with a txn id: the txn lookup, extremities,
# state, then the transaction (12 on SQLite; 13 on PostgreSQL, which reads the
# extremities again under the room's advisory lock, ``write_order``). Fewer is fine.
MAX_SEND_STATEMENTS = 13


def _txn_reads(by_sql: dict[str, int]) -> int:
    return sum(
        n for sql, n in by_sql.items() if sql.startswith("SELECT") and "event_txn_ids" in sql
    )


async def test_a_send_reads_its_txn_id_once(server: RunningServer, api: Api) -> None:
    rooms = rooms_of(server)
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    await send(api, alice, room_id, "warm", "warm the caches")
    txn = TxnRef(alice.user_id, alice.device_id, "t1")
    content = {"msgtype": "m.text", "body": "counted"}
    with count_statements() as counter:
        event_id = await rooms.send_event(
            alice.user_id, room_id, "m.room.message", content, None, txn
        )
    assert _txn_reads(counter.by_sql) == 1, counter.by_sql
    assert counter.total <= MAX_SEND_STATEMENTS, counter.by_sql
    # The retry: one read of the txn id, and nothing written.
    with count_statements() as counter:
        again = await rooms.send_event(alice.user_id, room_id, "m.room.message", content, None, txn)
    assert again == event_id
    assert _txn_reads(counter.by_sql) == 1, counter.by_sql
    assert not [s for s in counter.by_sql if s.startswith(("INSERT", "UPDATE"))], counter.by_sql


async def test_concurrent_replays_of_a_txn_id_send_one_event(
    server: RunningServer, api: Api
) -> None:
    rooms = rooms_of(server)
    alice = await api.register("alice")
    room_id = await create_room(api, alice)
    # Twelve at once (several batches, some while the first is being written), then
    # twelve more after it committed; each a different body, as a buggy client might.
    first = await asyncio.gather(
        *[send(api, alice, room_id, "same", f"try {i}") for i in range(12)]
    )
    later = await asyncio.gather(
        *[send(api, alice, room_id, "same", f"later {i}") for i in range(12)]
    )
    replies = [*first, *later]
    assert [r.status for r in replies] == [200] * 24, [r.body for r in replies]
    ids = {r.body["event_id"] for r in replies}
    assert len(ids) == 1
    r = await api.get(f"/rooms/{room_id}/messages?dir=b&limit=50", token=alice.access_token)
    assert r.status == 200, r.body
    messages = [e for e in r.body["chunk"] if e["type"] == "m.room.message"]
    assert [e["event_id"] for e in messages] == list(ids)
    # Another device's same txn id is its own send.
    login = await api.login(alice.user_id, alice.password)
    assert login.status == 200, login.body
    other = User(alice.user_id, login.body["access_token"], login.body["device_id"], "")
    r2 = await send(api, other, room_id, "same", "other device")
    assert r2.status == 200, r2.body
    assert r2.body["event_id"] not in ids
    stored = await rooms.events.by_ids(list(ids))
    assert len(stored) == 1
