"""A local join into a big room costs the same as into a small one (issue 15 #8: the
10,000-member curve's set-up, and #2/#5's big-room joins): the same statements at 10 and
200 members, none of them reading a row per member, for the join itself and for its push
evaluation. What used to grow: the local members' list and push evaluation's view of the
room, both dropped by every membership change and read whole again (now a commit brings
them up to date: ``LocalMembersCache``, ``PushRoomCache.advance``), and the room's
servers, read as every joined member's row (now an index walk, migration 0440).

And the kept views stay exact: an event is evaluated with the members of the state
before it, however far behind evaluation is when the join commits."""

from __future__ import annotations

import asyncio

from homeserver.app import HomeServer
from homeserver.storage.database import StatementCounter, count_statements
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_push_background import counts
from tests.integration.test_room_size_statement_counts import local_user, room_with_members
from tests.integration.test_rooms_membership import send_text
from tests.integration.test_sync_sections import sync

SMALL = 10
BIG = 200
# Statements that read one row per member of the room.
PER_MEMBER = (
    "SELECT user_id FROM room_memberships WHERE room_nid = $1",  # local users
    "FROM room_memberships m JOIN rooms r",  # push_members
    "SELECT DISTINCT substr(user_id",  # joined servers, before migration 0440
)


async def counted_join(hs: HomeServer, user: User, room_id: str) -> StatementCounter:
    """The statements of a join and of its push evaluation (the evaluator stopped, so the
    evaluation runs here, after the join committed)."""
    evaluator = hs.sync_area.push_evaluator
    await evaluator.stop()
    before = asyncio.all_tasks()
    with count_statements() as counter:
        await hs.rooms_area.memberships.join(user.user_id, room_id)
        for _ in range(10):
            if not await evaluator.step():
                break
        # What the join started (its presence look-up) counts whether or not it has run
        # yet: wait for it inside the block.
        started = asyncio.all_tasks() - before - {asyncio.current_task()}
        if started:
            await asyncio.wait(started, timeout=5)
    hs.background.append(evaluator.start())
    return counter


async def test_a_join_costs_the_same_at_10_and_200_members(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        joins: dict[int, StatementCounter] = {}
        for size in (SMALL, BIG):
            room_id, _ = await room_with_members(api, hs, owner, size, f"m{size}_")
            # Warm: a message evaluated, and a join, read what later joins keep.
            await send_text(api, owner, room_id, "warm", f"w{size}")
            await counted_join(hs, await local_user(hs, f"w{size}"), room_id)
            await sync(api, owner)
            joins[size] = await counted_join(hs, await local_user(hs, f"j{size}"), room_id)
            reads = [s for s in joins[size].by_sql if any(p in s for p in PER_MEMBER)]
            assert not reads, reads
    small, big = joins[SMALL], joins[BIG]
    diff = {
        k: big.by_sql.get(k, 0) - small.by_sql.get(k, 0)
        for k in set(small.by_sql) | set(big.by_sql)
        if big.by_sql.get(k, 0) != small.by_sql.get(k, 0)
    }
    assert small.total == big.total, diff


async def test_a_message_evaluated_after_a_later_join_does_not_count_for_the_joiner(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    evaluator = hs.sync_area.push_evaluator
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        room_id, reader = await room_with_members(api, hs, owner, 5, "m")
        await send_text(api, owner, room_id, "warm", "w")
        await sync(api, owner)  # evaluated: the room's view is kept from here
        dave = await local_user(hs, "dave")
        erin = await local_user(hs, "erin")
        await evaluator.stop()
        await send_text(api, owner, room_id, "before dave", "b")
        r = await api.post(f"/join/{room_id}", {}, token=dave.access_token)
        assert r.status == 200, r.body
        await send_text(api, owner, room_id, "between", "c")
        r = await api.post(f"/join/{room_id}", {}, token=erin.access_token)
        assert r.status == 200, r.body
        r = await api.post(f"/rooms/{room_id}/leave", {}, token=reader.access_token)
        assert r.status == 200, r.body
        await send_text(api, owner, room_id, "after", "d")
        hs.background.append(evaluator.start())
        assert counts(await sync(api, dave), room_id)["notification_count"] == 2
        assert counts(await sync(api, erin), room_id)["notification_count"] == 1
