"""The long-polls one message wakes read their heads and memberships together (issue 15,
fan-out): on PostgreSQL one statement for all of them (storage/set_statement.py), on
SQLite their reads share the reader threads' jobs (storage/read_batches.py). Each still
gets exactly its own answer: the same as an incremental /sync of its own token then,
unread counts included."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

from homeserver.app import HomeServer, RunningServer
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncRequest
from tests.helpers import Api, User
from tests.integration.sync_support import (
    LONG_POLL_MS,
    count,
    long_poll,
    parked,
    parked_long_poll,
)
from tests.integration.test_rooms_basic import create_room
from tests.integration.test_rooms_membership import send_text

MEMBERS = 5
WOKEN_READ = "AS own_presence"  # the heads (and memberships) statement's mark


async def _members_in_a_room(api: Api) -> tuple[User, list[User], str]:
    alice = await api.register("alice")
    members = [await api.register(f"member{i}") for i in range(MEMBERS)]
    room = await create_room(api, alice, preset="public_chat")
    for m in members:
        r = await api.post(f"/join/{room}", {}, token=m.access_token)
        assert r.status == 200, r.body
    return alice, members, room


def _aged(rooms: dict[str, Any]) -> dict[str, Any]:
    """``rooms`` without the events' ``unsigned.age`` (it grows between two reads)."""
    out = copy.deepcopy(rooms)
    for body in out["join"].values():
        for e in body["timeline"]["events"]:
            e.get("unsigned", {}).pop("age", None)
    return out


async def _token(api: Api, user: User) -> str:
    r = await api.get("/sync", token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["next_batch"])


async def _current(hs: HomeServer, user: User, token: str) -> str:
    """A token at the head of every stream the user sees, from ``token`` (once every
    member's first /sync has set its presence: later ones would move it)."""
    while True:
        body, _ = await long_poll(hs, user, token, 0)
        if body["next_batch"] == token:
            return token
        token = str(body["next_batch"])


async def test_woken_long_polls_share_their_read(server: RunningServer, api: Api) -> None:
    hs = server.hs
    alice, members, room = await _members_in_a_room(api)
    # Different answers per member: one has sent a message and read up to it (its
    # unread count differs).
    await send_text(api, alice, room, "before", "b0")
    seen = await send_text(api, members[0], room, "mine", "m0")
    r = await api.post(f"/rooms/{room}/receipt/m.read/{seen}", {}, token=members[0].access_token)
    assert r.status == 200, r.body
    first = {m.user_id: await _token(api, m) for m in members}
    tokens = {m.user_id: await _current(hs, m, first[m.user_id]) for m in members}
    parked = members
    polls = [await parked_long_poll(hs, m, tokens[m.user_id]) for m in parked]
    sent = await send_text(api, alice, room, "wake all", "w0")
    results: list[tuple[dict[str, Any], StatementCounter]] = await asyncio.wait_for(
        asyncio.gather(*polls), LONG_POLL_MS / 1000
    )

    woken_reads = sum(count(counter, WOKEN_READ) for _, counter in results)
    # Each poll read its heads once before parking; once woken, one read for all of
    # them on PostgreSQL, one each on SQLite (in the reader threads' shared jobs).
    if hs.db.engine == "postgres":
        assert woken_reads == len(parked) + 1
    else:
        assert woken_reads == 2 * len(parked)
    for m, (body, _) in zip(parked, results, strict=True):
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert sent in [e["event_id"] for e in events]
        # Exactly what its own incremental sync answers now.
        alone, _ = await long_poll(hs, m, tokens[m.user_id], 0)
        assert _aged(body["rooms"]) == _aged(alone["rooms"]), m.user_id
        assert body["next_batch"] == alone["next_batch"]
    counts = {
        m.user_id: body["rooms"]["join"][room]["unread_notifications"]
        for m, (body, _) in zip(parked, results, strict=True)
    }
    assert counts[members[0].user_id]["notification_count"] == 1  # after its receipt
    assert counts[members[2].user_id]["notification_count"] == 3


async def test_syncs_in_one_turn_each_get_their_own_answer(server: RunningServer, api: Api) -> None:
    """Incremental syncs made in the same turn (one batch, on PostgreSQL one statement)
    from tokens at different positions: each answer is the one it gets alone."""
    hs = server.hs
    alice, members, room = await _members_in_a_room(api)
    first = [await _token(api, m) for m in members]
    tokens = []
    for i, m in enumerate(members):
        tokens.append(await _current(hs, m, first[i]))
        await send_text(api, alice, room, f"after member {i}'s token", f"t{i}")
    together = await asyncio.gather(
        *(long_poll(hs, m, t, 0) for m, t in zip(members, tokens, strict=True))
    )
    for i, (m, t) in enumerate(zip(members, tokens, strict=True)):
        body = together[i][0]
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert len(events) == MEMBERS - i, m.user_id  # the messages after its own token
        alone, _ = await long_poll(hs, m, t, 0)
        assert _aged(body["rooms"]) == _aged(alone["rooms"]), m.user_id


async def test_long_polls_started_together_read_their_heads_together(
    server: RunningServer, api: Api
) -> None:
    """The long-polls the clients start after a fan-out come in together: on PostgreSQL
    those of one turn read their heads in one statement too."""
    hs = server.hs
    alice, members, room = await _members_in_a_room(api)
    first = {m.user_id: await _token(api, m) for m in members}
    tokens = {m.user_id: await _current(hs, m, first[m.user_id]) for m in members}
    requests = [await _request(hs, m, tokens[m.user_id]) for m in members]
    polls = [asyncio.create_task(_counted(hs, req)) for req in requests]  # in one turn
    for m, poll in zip(members, polls, strict=True):
        await parked(hs, m.user_id, poll)
    sent = await send_text(api, alice, room, "wake all", "w0")
    results = await asyncio.wait_for(asyncio.gather(*polls), LONG_POLL_MS / 1000)
    reads = sum(count(counter, WOKEN_READ) for _, counter in results)
    assert reads == (2 if hs.db.engine == "postgres" else 2 * MEMBERS)
    for body, _ in results:
        events = body["rooms"]["join"][room]["timeline"]["events"]
        assert [e["event_id"] for e in events] == [sent]


async def _request(hs: HomeServer, user: User, since: str) -> SyncRequest:
    found = await hs.accounts.store.get_user(user.user_id)
    assert found is not None
    return SyncRequest(
        user_id=user.user_id,
        device_id=user.device_id,
        user_nid=found.user_nid,
        since=StreamToken.parse(since, "since"),
        timeout_ms=LONG_POLL_MS,
    )


async def _counted(hs: HomeServer, req: SyncRequest) -> tuple[dict[str, Any], StatementCounter]:
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return body, counter
