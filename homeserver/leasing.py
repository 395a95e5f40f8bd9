"""Keeping leases (``homeserver.storage.leases``) while the process lives.

Design note
-----------
::

    every ttl/3 (and at start):
        for each lease this process may hold:
            home lease    -> claim/renew; if another holds it: ask for it back (want)
            foreign lease -> claim only when expired (its holder died); renew while
                             nobody wants it back; let it expire once its home asks
        held locally until (monotonic time before the claim) + ttl * SAFETY

``held(name)`` is answered from memory, so a sender can ask before every
transaction without a query. The local deadline starts *before* the claim was
sent and stops short of the row's expiry, so a process never believes it holds
a lease that another process may already have taken: a holder that cannot reach
the database stops acting before its lease expires there. Expiry in the row is
wall-clock time; processes on different machines need clocks that agree to well
within the lease time (NTP does).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from homeserver.clock import Clock
from homeserver.storage.leases import LeaseStore

log = logging.getLogger("myelin.leases")

# Act on a lease for at most this share of its time since the claim was sent.
SAFETY: Final = 0.8


@dataclass(frozen=True)
class Lease:
    """A lease this process may hold; ``home``: it is this process's by configuration."""

    name: str
    home: bool


class LeaseKeeper:
    def __init__(
        self,
        store: LeaseStore,
        owner: str,
        clock: Clock,
        ttl_ms: int,
        leases: Iterable[Lease],
        on_gained: Callable[[set[str]], None] = lambda _names: None,
        on_lost: Callable[[set[str]], None] = lambda _names: None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.owner = owner
        self.clock = clock
        self.ttl_ms = ttl_ms
        self.leases = list(leases)
        self.on_gained = on_gained
        self.on_lost = on_lost
        # What the last round held: a lease that ran out since is reported lost.
        self._last: set[str] = set()
        self._monotonic = monotonic
        self._until: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def held(self, name: str) -> bool:
        """Whether this process may act on ``name`` now (no I/O)."""
        return self._until.get(name, 0.0) > self._monotonic()

    def held_names(self) -> set[str]:
        return {lease.name for lease in self.leases if self.held(lease.name)}

    async def tick(self) -> None:
        """One round of claims and renewals; ``on_gained`` and ``on_lost`` hear of
        the leases this round took and of those held last round but not now."""
        for lease in self.leases:
            started = self._monotonic()
            try:
                ok = await self.store.claim(
                    lease.name,
                    self.owner,
                    self.clock.now_ms(),
                    self.ttl_ms,
                    yield_when_wanted=not lease.home,
                )
                if not ok and lease.home:
                    await self.store.want(lease.name, self.owner)
            except Exception as e:  # the database is away: what we hold runs out by itself
                log.warning("lease %s: renewal failed (%s)", lease.name, type(e).__name__)
                continue
            if ok:
                self._until[lease.name] = started + self.ttl_ms * SAFETY / 1000
            else:
                self._until.pop(lease.name, None)
        now = self.held_names()
        gained, lost, self._last = now - self._last, self._last - now, now
        for name in sorted(gained):
            log.info("lease %s taken by %s", name, self.owner)
        for name in sorted(lost):
            log.info("lease %s no longer held by %s", name, self.owner)
        if lost:
            self.on_lost(lost)
        if gained:
            self.on_gained(gained)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="leases")

    async def _run(self) -> None:
        interval = self.ttl_ms / 3 / 1000
        while True:
            try:
                await self.tick()
            except Exception:  # a callback failed: keep renewing, or another takes over
                log.exception("lease round of %s failed", self.owner)
            await asyncio.sleep(interval)

    async def close(self) -> None:
        """Stop renewing and give up every lease held, for another process to take now."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        held = self.held_names()
        self._until.clear()
        for name in held:
            try:
                await self.store.release(name, self.owner)
            except Exception as e:
                log.warning("lease %s: release failed (%s)", name, type(e).__name__)
