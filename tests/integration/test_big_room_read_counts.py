"""Big-room reads cost the same number of SQL statements in a room of 200 members as of
10 (issue 15: lazy-loaded initial /sync, ``GET /members``, ``GET /state``), and the
lazy-loaded initial sync stays within the statements it was cut to.

Counts, not timings: ``count_statements()`` around the service call each handler makes
(``SyncBuilder.sync``, ``RoomReader.members_json``, ``RoomReader.state_json``), after one
warming call of each (the state group and event caches fill on first read).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from homeserver.app import HomeServer
from homeserver.http.shell import encode_json
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.sync.model import SyncRequest
from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.test_room_size_statement_counts import explain, room_with_members
from tests.integration.test_rooms_membership import send_text

SMALL = 10
BIG = 200
# Statements of this lazy-loaded initial sync of one unnamed room (20 before its presence
# reads, three, were merged into one; 11 before the summary's counts, heroes and name
# were kept per room (``sync/summary_cache.py``) and the user's rooms read with the heads;
# 6 before the timeline and whether a relation points at its events were read with them).
LAZY_SYNC_MAX = 4
LAZY = json.dumps({"room": {"timeline": {"limit": 10}, "state": {"lazy_load_members": True}}})
FULL = json.dumps({"room": {"timeline": {"limit": 10}}})


async def lazy_sync(
    hs: HomeServer, user: User, filter_param: str = LAZY
) -> tuple[dict[str, Any], StatementCounter]:
    """An initial sync (lazy-loaded unless ``filter_param`` says otherwise), its state
    pre-encoded as ``GET /sync`` has it, and its body as the client reads it."""
    record = await hs.accounts.store.get_user(user.user_id)
    assert record is not None
    req = SyncRequest(
        user_id=user.user_id,
        device_id=user.device_id,
        user_nid=record.user_nid,
        filter_param=filter_param,
        encoded_state=True,
    )
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return orjson.loads(encode_json(body)), counter


async def test_lazy_initial_sync_members_and_state_cost_the_same_at_10_and_200(
    make_server: ServerFactory,
) -> None:
    server = await make_server()
    hs = server.hs
    reader = hs.rooms_area.reader
    syncs: dict[int, StatementCounter] = {}
    full_syncs: dict[int, StatementCounter] = {}
    members: dict[int, StatementCounter] = {}
    states: dict[int, StatementCounter] = {}
    async with Api(server.client_url) as api:
        owner = await api.register("owner")
        for size in (SMALL, BIG):
            room_id, reader_user = await room_with_members(api, hs, owner, size, f"m{size}_")
            for i in range(3):
                await send_text(api, owner, room_id, f"hello {i}", f"t{size}_{i}")
            await lazy_sync(hs, reader_user)  # warm
            body, syncs[size] = await lazy_sync(hs, reader_user)
            room = body["rooms"]["join"][room_id]
            # Lazy loading: the timeline senders' and the reader's own memberships only.
            in_state = {
                e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"
            }
            senders = {e["sender"] for e in room["timeline"]["events"]}
            assert in_state <= senders | {reader_user.user_id}, in_state
            assert reader_user.user_id in in_state | senders
            assert room["summary"]["m.joined_member_count"] == size
            # Without lazy loading: every member comes down, in as many statements.
            await lazy_sync(hs, reader_user, FULL)  # warm
            body, full_syncs[size] = await lazy_sync(hs, reader_user, FULL)
            state = body["rooms"]["join"][room_id]["state"]["events"]
            timeline = body["rooms"]["join"][room_id]["timeline"]["events"]
            everyone = {e["state_key"] for e in [*state, *timeline] if e["type"] == "m.room.member"}
            assert len(everyone) == size
            await reader.members_json(reader_user.user_id, room_id, None, None, None)
            with count_statements() as members[size]:
                chunk = await reader.members_json(reader_user.user_id, room_id, None, None, None)
            assert len(orjson.loads(orjson.dumps(chunk))) == size
            await reader.state_json(reader_user.user_id, room_id)
            with count_statements() as states[size]:
                await reader.state_json(reader_user.user_id, room_id)
    assert syncs[SMALL].total == syncs[BIG].total, "lazy sync: " + explain(syncs[SMALL], syncs[BIG])
    assert full_syncs[SMALL].total == full_syncs[BIG].total, "full initial sync: " + explain(
        full_syncs[SMALL], full_syncs[BIG]
    )
    listed = "\n".join(f"{n} {k[:150]}" for k, n in syncs[BIG].by_sql.items())
    assert syncs[BIG].total <= LAZY_SYNC_MAX, listed
    assert members[SMALL].total == members[BIG].total, "members: " + explain(
        members[SMALL], members[BIG]
    )
    assert states[SMALL].total == states[BIG].total, "state: " + explain(states[SMALL], states[BIG])
    # Repeated, both are answered from what was kept (rooms/state_lists.py), the reader's
    # membership read from the cached current state: no statement at all.
    assert members[BIG].total == 0, members[BIG].by_sql
    assert states[BIG].total == 0, states[BIG].by_sql
