"""A send and an incremental /sync run as many SQL statements in a room of 200 members as
in a room of 10 (issue 15: flat cost as rooms grow).

Counts, not timings: ``count_statements()`` (homeserver/storage/database.py) around the
service call that the HTTP handler makes (``RoomService.send_event``, ``SyncBuilder.sync``).
Push rules are evaluated behind the send (homeserver/push/evaluation.py), so the send's
count must not see the members at all; the sync's wait for that evaluation runs no
statement on the main process. Members are added cheaply: accounts made in-process
(no password hash), each joining over HTTP.
"""

from __future__ import annotations

from typing import Any

from homeserver.app import HomeServer
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncRequest
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

SMALL = 10
BIG = 200


async def local_user(hs: HomeServer, localpart: str) -> User:
    """An account and a session made in-process: no password, so no argon2 cost."""
    user_id = hs.accounts.user_id_for(localpart)
    await hs.accounts.create_account(user_id, None)
    record = await hs.accounts.store.get_user(user_id)
    assert record is not None
    session = await hs.accounts.start_session(record, None, None, False)
    return User(user_id, session.access_token, session.device_id, "")


async def room_with_members(
    api: Api, hs: HomeServer, owner: User, size: int, tag: str
) -> tuple[str, User]:
    """A public room of ``size`` joined members (the owner included); one of them, the
    reader, is returned."""
    room_id = await create_room(api, owner, preset="public_chat")
    reader = owner
    for i in range(size - 1):
        reader = await local_user(hs, f"{tag}{i}")
        r = await api.post(f"/join/{room_id}", {}, token=reader.access_token)
        assert r.status == 200, r.body
    return room_id, reader


async def counted_send(hs: HomeServer, sender: User, room_id: str, n: int) -> StatementCounter:
    with count_statements() as counter:
        await hs.rooms_area.rooms.send_event(
            sender.user_id, room_id, "m.room.message", {"msgtype": "m.text", "body": f"hi {n}"}
        )
    return counter


async def counted_sync(
    hs: HomeServer, user: User, since: str | None
) -> tuple[dict[str, Any], StatementCounter]:
    record = await hs.accounts.store.get_user(user.user_id)
    assert record is not None
    req = SyncRequest(
        user_id=user.user_id,
        device_id=user.device_id,
        user_nid=record.user_nid,
        since=StreamToken.parse(since, "since") if since else None,
    )
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return body, counter


def explain(small: StatementCounter, big: StatementCounter) -> str:
    keys = set(small.by_sql) | set(big.by_sql)
    diff = [
        f"{big.by_sql.get(k, 0) - small.by_sql.get(k, 0):+d}  {k[:160]}"
        for k in sorted(keys)
        if big.by_sql.get(k, 0) != small.by_sql.get(k, 0)
    ]
    return f"{small.total} statements at {SMALL} members, {big.total} at {BIG}:\n" + "\n".join(diff)


async def test_send_and_incremental_sync_cost_the_same_in_10_and_200_members(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        rooms = {
            size: await room_with_members(api, hs, owner, size, f"m{size}_")
            for size in (SMALL, BIG)
        }
        sends: dict[int, StatementCounter] = {}
        syncs: dict[int, StatementCounter] = {}
        for size, (room_id, reader) in rooms.items():
            joined = await hs.rooms_area.rooms.members.members(
                (await hs.rooms_area.rooms.rooms.get_room(room_id)).room_nid  # type: ignore[union-attr]
            )
            assert len(joined) == size
            # Warm: the first send and sync of a room fill caches the next ones read.
            await send_text(api, owner, room_id, "warm", f"w{size}")
            first, _ = await counted_sync(hs, reader, None)
            await counted_send(hs, owner, room_id, 0)
            body, _ = await counted_sync(hs, reader, first["next_batch"])
            sends[size] = await counted_send(hs, owner, room_id, 1)
            inc, syncs[size] = await counted_sync(hs, reader, body["next_batch"])
            timeline = inc["rooms"]["join"][room_id]["timeline"]["events"]
            assert [e["content"]["body"] for e in timeline] == ["hi 1"]
            # The reader's count includes the send it was just told of.
            counts = inc["rooms"]["join"][room_id]["unread_notifications"]
            assert counts["notification_count"] == 3, counts
    assert sends[SMALL].total == sends[BIG].total, "send: " + explain(sends[SMALL], sends[BIG])
    assert syncs[SMALL].total == syncs[BIG].total, "sync: " + explain(syncs[SMALL], syncs[BIG])
