"""What the /sync cost tests share: two users on a fresh server, and the two in one room
(the ``alice_and_bob`` and ``two_in_a_room`` fixtures, tests/integration/conftest.py), a
long-poll run in-process with its statements counted, and a bounded wait until it is
parked on the notifier."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from homeserver.app import HomeServer, RunningServer
from homeserver.storage.database import StatementCounter, count_statements
from homeserver.streams.tokens import StreamToken
from homeserver.sync.model import SyncRequest
from tests.helpers import Api, User
from tests.integration.test_rooms_basic import create_room

T = TypeVar("T")

LONG_POLL_MS = 60_000
PARK_CHECKS = 2_000


async def shared_room(api: Api, alice: User, bob: User) -> str:
    """A public room of ``alice`` that ``bob`` joined."""
    room_id = await create_room(api, alice, preset="public_chat")
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    return room_id


@dataclass
class TwoUsers:
    """A fresh server, a client on it, and two users registered there."""

    server: RunningServer
    api: Api
    alice: User
    bob: User

    @property
    def hs(self) -> HomeServer:
        return self.server.hs

    async def next_batch(self, user: User) -> str:
        """``user``'s token now, from an initial /sync."""
        r = await self.api.get("/sync", token=user.access_token)
        assert r.status == 200, r.body
        return str(r.body["next_batch"])


@dataclass
class TwoInARoom(TwoUsers):
    """... and both joined to ``room``, a public room of alice's."""

    room: str


def count(counter: StatementCounter, fragment: str) -> int:
    """Statements whose SQL contains ``fragment``."""
    return sum(n for sql, n in counter.by_sql.items() if fragment in sql)


async def long_poll(
    hs: HomeServer, user: User, since: str, timeout_ms: int
) -> tuple[dict[str, Any], StatementCounter]:
    """``user``'s /sync from ``since``, built in-process, with the statements it issued."""
    found = await hs.accounts.store.get_user(user.user_id)
    assert found is not None
    req = SyncRequest(
        user_id=user.user_id,
        device_id=user.device_id,
        user_nid=found.user_nid,
        since=StreamToken.parse(since, "since"),
        timeout_ms=timeout_ms,
    )
    with count_statements() as counter:
        body = await hs.sync_area.sync.sync(req)
    return body, counter


async def parked(hs: HomeServer, user_id: str, poll: asyncio.Task[Any]) -> None:
    """Until the long-poll is registered with the notifier under ``user_id`` (or a
    room id) (bounded)."""
    notifier = hs.sync_area.sync.notifier
    for _ in range(PARK_CHECKS):
        if user_id in notifier._listeners or poll.done():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the long-poll never parked")


async def parked_long_poll(
    hs: HomeServer, user: User, since: str, listening_on: str | None = None
) -> asyncio.Task[tuple[dict[str, Any], StatementCounter]]:
    """A ``long_poll`` of ``LONG_POLL_MS`` started, once it is parked on the notifier
    (on ``listening_on``, default the user)."""
    poll = asyncio.create_task(long_poll(hs, user, since, LONG_POLL_MS))
    await parked(hs, listening_on or user.user_id, poll)
    return poll


async def woken(
    hs: HomeServer,
    user: User,
    since: str,
    act: Callable[[], Awaitable[T]],
    listening_on: str | None = None,
) -> tuple[dict[str, Any], StatementCounter, T]:
    """Long-poll ``user``'s /sync from ``since``, do ``act`` once the poll is parked
    (on ``listening_on``, default the user), and return what the poll woke with, its
    statements, and what ``act`` returned."""
    poll = await parked_long_poll(hs, user, since, listening_on)
    done = await act()
    body, counter = await asyncio.wait_for(poll, LONG_POLL_MS / 1000)
    return body, counter, done
