"""/sync issues a number of SQL statements that does not grow with the user's rooms.

Counts, not timings: the statements of one sync are counted with
``count_statements()`` (homeserver/storage/database.py) around the sync
builder that GET /sync calls, for a user in a few rooms and in many, and the
two counts must be the same up to a slack smaller than one statement per
added room.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.app import HomeServer
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncRequest
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

FEW = 5
MANY = 30
# Statements that may differ between two syncs for reasons other than the number of
# rooms (a cache filled by the first, a presence write skipped by the second).
SLACK = 6

LAZY = json.dumps({"room": {"state": {"lazy_load_members": True}}})


async def add_rooms(api: Api, alice: User, bob: User, carol: User, first: int, count: int) -> None:
    """Rooms of every shape /sync treats apart: named or not (heroes), history visible
    from the join or shared, a third member who spoke (lazy-loaded members)."""
    for i in range(first, first + count):
        body: dict[str, Any] = {"preset": "private_chat", "invite": [bob.user_id, carol.user_id]}
        if i % 2:
            body["name"] = f"room {i}"
        room_id = await create_room(api, alice, **body)
        if i % 3 == 0:
            r = await api.put(
                f"/rooms/{room_id}/state/m.room.history_visibility/",
                {"history_visibility": "joined"},
                token=alice.access_token,
            )
            assert r.status == 200, r.body
        await send_text(api, alice, room_id, "before bob", f"a{i}")
        for user in (bob, carol):
            r = await api.post(f"/rooms/{room_id}/join", {}, token=user.access_token)
            assert r.status == 200, r.body
        await send_text(api, carol, room_id, "hello", f"c{i}")
        await send_text(api, alice, room_id, "after bob", f"b{i}")


async def counted_sync(
    hs: HomeServer, bob: User, since: str | None = None, filter_param: str | None = None
) -> tuple[dict[str, Any], StatementCounter]:
    user = await hs.accounts.store.get_user(bob.user_id)
    assert user is not None
    req = SyncRequest(
        user_id=bob.user_id,
        device_id=bob.device_id,
        user_nid=user.user_nid,
        since=StreamToken.parse(since, "since") if since else None,
        filter_param=filter_param,
    )
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return body, counter


def explain(few: StatementCounter, many: StatementCounter) -> str:
    grown = [
        f"{many.by_sql[sql] - few.by_sql.get(sql, 0):+d}  {sql[:160]}"
        for sql in many.by_sql
        if many.by_sql[sql] > few.by_sql.get(sql, 0)
    ]
    return f"{few.total} statements for {FEW} rooms, {many.total} for {MANY}:\n" + "\n".join(grown)


async def test_sync_statement_count_does_not_grow_with_rooms(make_server: ServerFactory) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        carol = await api.register("carol")
        await add_rooms(api, alice, bob, carol, 0, FEW)

        results: dict[int, dict[str, StatementCounter]] = {}
        for rooms in (FEW, MANY):
            if rooms == MANY:
                await add_rooms(api, alice, bob, carol, FEW, MANY - FEW)
            counts: dict[str, StatementCounter] = {}
            # Twice each: the first initial sync may fill caches the second one reads.
            await counted_sync(hs, bob)
            body, counts["initial"] = await counted_sync(hs, bob)
            assert len(body["rooms"]["join"]) == rooms
            await counted_sync(hs, bob, filter_param=LAZY)
            lazy_body, counts["lazy"] = await counted_sync(hs, bob, filter_param=LAZY)
            assert len(lazy_body["rooms"]["join"]) == rooms
            # Incremental: something new in every room.
            for room_id in body["rooms"]["join"]:
                await send_text(api, carol, room_id, "news", f"n{rooms}{room_id}")
            inc, counts["incremental"] = await counted_sync(hs, bob, body["next_batch"])
            assert len(inc["rooms"]["join"]) == rooms
            for room in inc["rooms"]["join"].values():
                assert [e["content"]["body"] for e in room["timeline"]["events"]] == ["news"]
            results[rooms] = counts

    for kind in ("initial", "lazy", "incremental"):
        few, many = results[FEW][kind], results[MANY][kind]
        assert many.total <= few.total + SLACK, f"{kind} sync: " + explain(few, many)
