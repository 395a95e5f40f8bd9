"""Fixtures shared by the integration tests (the ones every test needs are in
tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from homeserver.app import RunningServer
from tests.conftest import ENGINE, ServerFactory
from tests.helpers import Api
from tests.integration.sync_support import TwoInARoom, TwoUsers, shared_room
from tests.processes import main_and_worker


@pytest.fixture
async def alice_and_bob(make_server: ServerFactory) -> AsyncIterator[TwoUsers]:
    """Alice and bob, registered on a fresh server."""
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        yield TwoUsers(server, api, alice, bob)


@pytest.fixture
async def two_in_a_room(alice_and_bob: TwoUsers) -> TwoInARoom:
    """Alice and bob, registered on a fresh server and joined to one public room."""
    t = alice_and_bob
    room = await shared_room(t.api, t.alice, t.bob)
    return TwoInARoom(t.server, t.api, t.alice, t.bob, room)


@pytest.fixture
async def pair(make_server: ServerFactory) -> AsyncIterator[tuple[RunningServer, RunningServer]]:
    """A main process and a worker beside it over one PostgreSQL database
    (``tests.processes.main_and_worker``); skipped on SQLite."""
    if ENGINE != "postgres":
        pytest.skip("several processes need PostgreSQL")
    async with main_and_worker(make_server) as servers:
        yield servers
