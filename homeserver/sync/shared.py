"""One build for identical /sync requests in flight at the same time.

Design note
-----------
A client that retries a /sync (a timed-out HTTP request, a reconnect, two tabs of
the same session) sends the same request again while the first is still waiting
or building: the same user, device, token, filter and options. Both would build
the same answer (every section reads from the token to the positions it reads,
and the to-device acknowledgement is idempotent), so the second waits for the
first's build instead of doing it again. Only requests equal in every field share
(``SyncRequest`` is a frozen dataclass); a different timeout does not.

The build runs in a task of its own, so one waiter going away (its client
disconnected) does not end the others' answer; when the last waiter goes, the
build is cancelled, as a lone request's would be.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.sync.model import SyncRequest

Build = Callable[[SyncRequest], Awaitable[dict[str, Any]]]


@dataclass
class _InFlight:
    task: asyncio.Task[dict[str, Any]]
    waiters: int = 0


class SharedBuilds:
    def __init__(self, build: Build) -> None:
        self._build = build
        self._inflight: dict[SyncRequest, _InFlight] = {}

    def in_flight(self) -> int:
        """Builds running now (for tests)."""
        return len(self._inflight)

    async def run(self, req: SyncRequest) -> dict[str, Any]:
        shared = self._inflight.get(req)
        if shared is None:
            shared = _InFlight(asyncio.ensure_future(self._build(req)))
            self._inflight[req] = shared
            shared.task.add_done_callback(functools.partial(self._done, req, shared))
        shared.waiters += 1
        try:
            return await asyncio.shield(shared.task)
        except asyncio.CancelledError:
            if shared.waiters == 1 and not shared.task.done():
                shared.task.cancel()  # the last one waiting went away
            raise
        finally:
            shared.waiters -= 1

    def _done(
        self, req: SyncRequest, shared: _InFlight, _task: asyncio.Task[dict[str, Any]]
    ) -> None:
        if self._inflight.get(req) is shared:
            del self._inflight[req]
