"""ReceiptService over a real database (both engines), with in-test room facts."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from homeserver.clock import Clock
from homeserver.errors import MatrixError
from homeserver.rooms.ephemeral.receipts import ReceiptService, edu_content
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord, ReceiptStore
from tests.room_facts import RoomFacts

ROOM = "!room:localhost"
OTHER = "!other:localhost"
ALICE = "@alice:localhost"
BOB = "@bob:localhost"


class FixedClock(Clock):
    def __init__(self) -> None:
        self.now = 1_700_000_000_000

    def now_ms(self) -> int:
        self.now += 1
        return self.now


def make(server: RunningServer) -> tuple[ReceiptService, RoomFacts, list[ReceiptRecord]]:
    facts = RoomFacts()
    for user in (ALICE, BOB):
        facts.join(user, ROOM)
    service = ReceiptService(
        ReceiptStore(server.hs.db),
        FixedClock(),
        facts.is_joined,
        facts.event_in_room,
        facts.set_room_account_data,
    )
    seen: list[ReceiptRecord] = []
    service.change_hooks.append(seen.append)
    return service, facts, seen


async def test_positions_advance_and_shape_matches_m_receipt(server: RunningServer) -> None:
    service, facts, seen = make(server)
    e1 = facts.add_event(ROOM, "e1")
    e2 = facts.add_event(ROOM, "e2")
    assert await service.current_position() == 0
    await service.send_receipt(ALICE, ROOM, "m.read", e1)
    assert await service.current_position() == 1
    await service.send_receipt(BOB, ROOM, "m.read", e1, "main")
    await service.send_receipt(ALICE, ROOM, "m.read", e2, "main")
    assert await service.current_position() == 3
    assert [r.stream_pos for r in seen] == [1, 2, 3]
    t1, t2, t3 = (r.ts for r in seen)

    assert await service.receipts_since([ROOM], 0, ALICE) == {
        ROOM: {
            e1: {"m.read": {ALICE: {"ts": t1}, BOB: {"ts": t2, "thread_id": "main"}}},
            e2: {"m.read": {ALICE: {"ts": t3, "thread_id": "main"}}},
        }
    }
    assert await service.receipts_since([ROOM], 2, ALICE) == {
        ROOM: {e2: {"m.read": {ALICE: {"ts": t3, "thread_id": "main"}}}}
    }
    assert await service.receipts_since([ROOM], 3, ALICE) == {}
    assert await service.receipts_since([OTHER], 0, ALICE) == {}
    # upto bounds the answer so a sync token taken earlier stays consistent
    assert await service.receipts_since([ROOM], 0, ALICE, upto_pos=1) == {
        ROOM: {e1: {"m.read": {ALICE: {"ts": t1}}}}
    }


async def test_newer_receipt_replaces_the_older_one(server: RunningServer) -> None:
    service, facts, _ = make(server)
    e1 = facts.add_event(ROOM, "e1")
    e2 = facts.add_event(ROOM, "e2")
    await service.send_receipt(ALICE, ROOM, "m.read", e1)
    await service.send_receipt(ALICE, ROOM, "m.read", e2)
    since0 = await service.receipts_since([ROOM], 0, BOB)
    assert list(since0[ROOM]) == [e2]


async def test_private_receipts_only_reach_their_owner(server: RunningServer) -> None:
    service, facts, _ = make(server)
    e1 = facts.add_event(ROOM, "e1")
    await service.send_receipt(ALICE, ROOM, "m.read.private", e1)
    await service.send_receipt(BOB, ROOM, "m.read", e1)
    mine = await service.receipts_since([ROOM], 0, ALICE)
    assert set(mine[ROOM][e1]) == {"m.read", "m.read.private"}
    assert list(mine[ROOM][e1]["m.read.private"]) == [ALICE]
    theirs = await service.receipts_since([ROOM], 0, BOB)
    assert theirs[ROOM][e1] == {"m.read": {BOB: theirs[ROOM][e1]["m.read"][BOB]}}
    # never federated either
    public = await service.public_receipts_between(0, 10)
    assert [(r.user_id, r.receipt_type) for r in public] == [(BOB, "m.read")]
    assert edu_content(public) == {
        ROOM: {"m.read": {BOB: {"event_ids": [e1], "data": {"ts": public[0].ts}}}}
    }


async def test_refusals_change_nothing(server: RunningServer) -> None:
    service, facts, seen = make(server)
    e1 = facts.add_event(ROOM, "e1")
    elsewhere = facts.add_event(OTHER, "x")
    cases = [
        (("@eve:localhost", ROOM, "m.read", e1, None), 403, "M_FORBIDDEN"),
        ((ALICE, ROOM, "m.read", elsewhere, None), 404, "M_NOT_FOUND"),
        ((ALICE, ROOM, "m.bogus", e1, None), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.read", "$short", None), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.read", e1, ""), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.read", e1, 5), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.read", e1, "thread"), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.read", e1, elsewhere), 400, "M_INVALID_PARAM"),
        ((ALICE, ROOM, "m.fully_read", e1, "main"), 400, "M_INVALID_PARAM"),
    ]
    for args, status, errcode in cases:
        with pytest.raises(MatrixError) as err:
            await service.send_receipt(*args)
        assert (err.value.status, err.value.errcode) == (status, errcode), args
    assert await service.current_position() == 0
    assert seen == [] and facts.account_data == {}


async def test_fully_read_is_room_account_data(server: RunningServer) -> None:
    service, facts, _ = make(server)
    e1 = facts.add_event(ROOM, "e1")
    e2 = facts.add_event(ROOM, "e2")
    await service.send_receipt(ALICE, ROOM, "m.fully_read", e1)
    assert facts.account_data == {(ALICE, ROOM, "m.fully_read"): {"event_id": e1}}
    assert await service.current_position() == 0  # not a receipt
    await service.set_read_markers(ALICE, ROOM, fully_read=e2, read=e1, read_private=e2)
    assert facts.account_data[(ALICE, ROOM, "m.fully_read")] == {"event_id": e2}
    got = await service.receipts_since([ROOM], 0, ALICE)
    assert set(got[ROOM]) == {e1, e2}
    assert list(got[ROOM][e1]) == ["m.read"] and list(got[ROOM][e2]) == ["m.read.private"]


async def test_many_rooms_are_queried_in_chunks(server: RunningServer) -> None:
    service, facts, _ = make(server)
    rooms = [f"!r{i}:localhost" for i in range(1200)]
    for room in (rooms[3], rooms[700], rooms[1199]):
        facts.join(ALICE, room)
        eid = facts.add_event(room, room)
        await service.send_receipt(ALICE, room, "m.read", eid)
    got = await service.receipts_since(rooms, 0, BOB)
    assert set(got) == {rooms[3], rooms[700], rooms[1199]}
