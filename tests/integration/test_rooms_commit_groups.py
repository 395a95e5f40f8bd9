"""Sends into many rooms at once (a sender each, so no room's own group commit helps):
every one persists, in order per room, and a send whose transaction fails leaves the
others' committed. On SQLite their transactions share COMMITs (``group_commit``)."""

from __future__ import annotations

import asyncio
from typing import Any

from homeserver.app import RunningServer
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.storage.database import Queries, SqliteDatabase
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_send_batches import rooms_of

ROOMS = 8
PER_ROOM = 6


def count_commits(server: RunningServer) -> list[str]:
    """The COMMITs of the SQLite writer from now on (empty on PostgreSQL)."""
    seen: list[str] = []
    db = server.hs.db
    if isinstance(db, SqliteDatabase) and db._groups is not None:
        groups = db._groups
        run = groups.run

        async def counting(conn: Any, sql: str) -> None:
            if sql == "COMMIT":
                seen.append(sql)
            await run(conn, sql)

        groups.run = counting
    return seen


async def bodies(api: Api, user: User, room_id: str) -> list[str]:
    r = await api.get(
        f"/rooms/{room_id}/messages",
        token=user.access_token,
        params={"dir": "f", "limit": "100", "filter": '{"types": ["m.room.message"]}'},
    )
    assert r.status == 200, r.body
    return [e["content"]["body"] for e in r.body["chunk"]]


async def test_rooms_sending_at_once_all_persist_in_order(server: RunningServer, api: Api) -> None:
    users = [await api.register(f"s{i}") for i in range(ROOMS)]
    room_ids = [await create_room(api, u) for u in users]
    failing = f"{ROOMS // 2}.3"  # one send of one room fails inside its transaction

    async def refuse(q: Queries, stored: StoredEvent, _plan: PersistPlan) -> AfterCommit | None:
        if stored.event.content.get("body") == failing:
            raise RuntimeError("this send's transaction fails")
        return None

    rooms = rooms_of(server)
    rooms.persister.txn_hooks.append(refuse)
    commits = count_commits(server)
    statuses: dict[str, int] = {}

    async def sender(i: int) -> None:
        for n in range(PER_ROOM):
            r = await api.put(
                f"/rooms/{room_ids[i]}/send/m.room.message/t{n}",
                {"msgtype": "m.text", "body": f"{i}.{n}"},
                token=users[i].access_token,
            )
            statuses[f"{i}.{n}"] = r.status

    try:
        await asyncio.gather(*(sender(i) for i in range(ROOMS)))
    finally:
        rooms.persister.txn_hooks.remove(refuse)

    assert statuses.pop(failing) == 500
    assert set(statuses.values()) == {200}
    for i, (user, room_id) in enumerate(zip(users, room_ids, strict=True)):
        want = [f"{i}.{n}" for n in range(PER_ROOM) if f"{i}.{n}" != failing]
        assert await bodies(api, user, room_id) == want
    if isinstance(server.hs.db, SqliteDatabase):
        # 48 sends' transactions (and whatever ran beside them) in fewer COMMITs.
        assert 0 < len(commits) < ROOMS * PER_ROOM, len(commits)
