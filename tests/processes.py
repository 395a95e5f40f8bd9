"""Helpers shared by the tests that run several Myelin processes over one PostgreSQL
(test_two_processes, test_spread, the worker tests): starting a main process with a
worker beside it, bounded waits for what another process must see, and the few
client steps they all take."""

from __future__ import annotations

import asyncio
import inspect
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

from homeserver.app import RunningServer, start_worker
from tests.conftest import ServerFactory, free_port, stop_or_explain
from tests.helpers import Api, Reply, User

T = TypeVar("T")

WAIT_S = 30.0  # a bound for "it arrives", not a measurement
ROUNDS = 300  # bounded re-reads while a cross-process message is on its way


async def eventually(read: Callable[[], Awaitable[Reply]], ok: Callable[[Reply], bool]) -> Reply:
    """Read until ``ok`` (a message from the other process may still be in flight)."""
    reply = await read()
    for _ in range(ROUNDS):
        if ok(reply):
            return reply
        await asyncio.sleep(0.05)
        reply = await read()
    return reply


async def until(check: Callable[[], Awaitable[bool] | bool], rounds: int = ROUNDS) -> bool:
    """Re-check until ``check`` holds, at most ``rounds`` times; its last answer, for the
    test to assert (what another process does reaches this one a moment later)."""
    for _ in range(rounds):
        held = check()
        if await held if inspect.isawaitable(held) else held:
            return True
        await asyncio.sleep(0.05)
    held = check()
    return bool(await held if inspect.isawaitable(held) else held)


WORKER = "w1"  # the worker's name in the configurations these helpers write


@asynccontextmanager
async def main_and_worker(
    make_server: ServerFactory, worker: dict[str, Any] | None = None, **overrides: Any
) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """A main process from ``make_server`` (which stops it and drops its database after
    the test) and the worker ``WORKER`` of its configuration, as ``myelin run --worker``
    starts it; the worker is stopped on exit, before the main process.

    ``worker`` is the worker's section (default: a client listener on a free port);
    ``overrides`` go to the configuration, as for ``make_server``."""
    section = worker if worker is not None else {"client_port": free_port()}
    main = await make_server(workers={WORKER: section}, **overrides)
    started = await start_worker(main.hs.config, WORKER)
    try:
        yield main, started
    finally:
        await stop_or_explain(started)


async def new_room(api: Api, user: User) -> str:
    r = await api.post("/createRoom", {"preset": "private_chat"}, token=user.access_token)
    assert r.status == 200, r.body
    return str(r.body["room_id"])


async def send(api: Api, user: User, room_id: str, body: str) -> str:
    r = await api.put(
        f"/rooms/{room_id}/send/m.room.message/{secrets.token_hex(8)}",
        {"msgtype": "m.text", "body": body},
        token=user.access_token,
    )
    assert r.status == 200, r.body
    return str(r.body["event_id"])


def typing_in(body: dict[str, Any], room_id: str) -> list[str] | None:
    """The m.typing user list of ``room_id`` in a /sync answer (None: no m.typing)."""
    room = body.get("rooms", {}).get("join", {}).get(room_id, {})
    for event in room.get("ephemeral", {}).get("events", []):
        if event["type"] == "m.typing":
            return list(event["content"]["user_ids"])
    return None


async def room_with(api: Api, user: User, joiner_api: Api, joiner: User) -> str:
    """A private room of ``user`` that ``joiner`` was invited to and joined (through
    ``joiner_api``, which may be another process's)."""
    room_id = await new_room(api, user)
    r = await api.post(
        f"/rooms/{room_id}/invite", {"user_id": joiner.user_id}, token=user.access_token
    )
    assert r.status == 200, r.body
    r = await joiner_api.post(f"/rooms/{room_id}/join", {}, token=joiner.access_token)
    assert r.status == 200, r.body
    return room_id


async def public_room_joined_from(
    api: Api, user: User, remote_api: Api, remote_user: User, via: str
) -> str:
    """A public room of ``user`` that ``remote_user``, on another server, joined over
    federation through the server named ``via``."""
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=user.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])
    path = f"/join/{quote(room_id, safe='')}?server_name={quote(via, safe='')}"
    r = await remote_api.post(path, {}, token=remote_user.access_token)
    assert r.status == 200, r.body
    return room_id


def long_poll(api: Api, user: User, since: str) -> asyncio.Task[Reply]:
    """A /sync long-poll far longer than ``WAIT_S``: it answers in time only if woken."""
    params = {"since": since, "timeout": "120000"}
    return asyncio.create_task(api.get("/sync", token=user.access_token, params=params))


async def woken_by(
    api: Api, user: User, since: str, act: Callable[[], Awaitable[T]]
) -> tuple[Reply, T]:
    """Long-poll ``user``'s /sync on ``api`` from ``since``, do ``act`` once the poll
    waits, and return what the poll woke with, and what ``act`` returned."""
    poll = long_poll(api, user, since)
    await asyncio.sleep(0.2)  # let the poll start waiting (it is correct either way)
    done = await act()
    return await asyncio.wait_for(poll, WAIT_S), done
