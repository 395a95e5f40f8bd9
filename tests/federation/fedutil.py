"""Helpers for tests with several real servers over loopback TLS."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from federation import Federation
from federation.relay import Relay
from homeserver.app import RunningServer
from tests.conftest import ServerFactory, free_port
from tests.helpers import Api, User

T = TypeVar("T")

# Short back-off so that retries happen within a test.
FAST_RETRY = {"federation": {"min_retry_ms": 50, "max_retry_ms": 400}}


async def federated(make_server: ServerFactory) -> RunningServer:
    return await make_server(federated=True, **FAST_RETRY)


def name(server: RunningServer) -> str:
    return server.hs.config.server_name


def fed(server: RunningServer) -> Federation:
    assert server.hs.federation is not None
    return server.hs.federation


def relay(server: RunningServer) -> Relay:
    r = fed(server).relay
    assert r is not None
    return r


async def register(server: RunningServer, username: str) -> User:
    async with Api(server.client_url) as api:
        return await api.register(username)


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    timeout_s: float = 15.0,
) -> T:
    """Call ``probe`` until ``done(result)``; the last result (the test asserts on it)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if done(result) or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def inbox(server: RunningServer, user: User) -> list[dict[str, Any]]:
    events, _ = await server.hs.e2ee.to_device.to_device_for(user.user_id, user.device_id, 0)
    return events


def free_port_name() -> str:
    """The server name of a loopback server that is not running (a port free right now)."""
    return f"127.0.0.1:{free_port()}"
