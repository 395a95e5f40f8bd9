"""Retention of client IP addresses and User-Agents (config ``privacy``).

Each device row keeps the IP and User-Agent of its last request, for the
device list and the admin whois API. This job forgets them once the device
has not been seen for ``privacy.client_ip_retention``; with
``store_client_ips: false`` nothing new is stored (accounts/auth.py) and the
job clears whatever an earlier configuration left behind. The job runs at
start-up and then hourly: retention is counted in days, a faster loop would
only cost queries.
"""

from __future__ import annotations

import asyncio
import logging

from homeserver.accounts.store import AccountStore
from homeserver.clock import Clock
from homeserver.config import PrivacyConfig
from homeserver.logs import new_request_id, request_id

log = logging.getLogger("myelin.accounts.client_ips")

PURGE_INTERVAL_S = 3600.0


class ClientIpRetention:
    def __init__(self, store: AccountStore, clock: Clock, privacy: PrivacyConfig) -> None:
        self._store = store
        self._clock = clock
        self._privacy = privacy

    def cutoff_ms(self, now_ms: int) -> int | None:
        """IPs of devices last seen before this time go; None: keep them all."""
        if not self._privacy.store_client_ips:
            return now_ms + 1
        retention = self._privacy.client_ip_retention_ms
        return None if retention is None else now_ms - retention

    async def purge(self, now_ms: int | None = None) -> int:
        """One pass; returns the number of devices whose IP/User-Agent was cleared."""
        cutoff = self.cutoff_ms(self._clock.now_ms() if now_ms is None else now_ms)
        if cutoff is None:
            return 0
        cleared = await self._store.forget_client_ips(cutoff)
        if cleared:
            log.info("forgot the client IP and user agent of %d devices", cleared)
        return cleared

    async def run(self) -> None:
        """Background task: a pass at start-up, then one an hour."""
        while True:
            request_id.set(new_request_id("client-ip-purge"))
            try:
                await self.purge()
            except Exception:
                log.exception("client IP purge failed")
            await asyncio.sleep(PURGE_INTERVAL_S)
