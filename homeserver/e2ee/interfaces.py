"""What e2ee needs from other areas, as small protocols passed in constructors.

The rooms area provides ``SharedRoomsLookup`` (who shares a room with a
user); federation provides ``RemoteKeys`` (``/user/keys/query`` and
``/user/keys/claim`` on other servers). Until federation is wired,
``NoRemoteKeys`` answers every remote request with an honest failure.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

# (user_id) -> the user ids (local and remote) sharing at least one room with them.
SharedRoomsLookup = Callable[[str], Awaitable[set[str]]]

# Hooks published by e2ee, subscribed by the composition root (notifier, federation).
# (user_id, device_ids): the device list of user_id changed (empty list: cross-signing keys).
DeviceListHook = Callable[[str, list[str]], Awaitable[None]]
# (user_id, device_ids): to-device messages were queued for these local devices.
ToDeviceHook = Callable[[str, list[str]], Awaitable[None]]
# (destination): to-device messages were queued in the outbox for that server.
OutboxHook = Callable[[str], Awaitable[None]]


class RemoteUnavailable(Exception):
    """A remote server could not answer; ``reason`` is safe to show to clients."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RemoteKeys(Protocol):
    """Federation's side of /keys/query and /keys/claim for users on other servers."""

    async def query_keys(
        self, destination: str, device_keys: dict[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        """The federation ``/user/keys/query`` answer: device_keys, master_keys,
        self_signing_keys. Raises ``RemoteUnavailable``."""
        ...

    async def claim_keys(
        self, destination: str, one_time_keys: dict[str, dict[str, str]], timeout_ms: int
    ) -> dict[str, Any]:
        """The federation ``/user/keys/claim`` answer's ``one_time_keys``.
        Raises ``RemoteUnavailable``."""
        ...


class NoRemoteKeys:
    """Used until federation provides ``RemoteKeys``: every remote server fails, honestly."""

    REASON = "Key requests to other servers are not supported by this server yet"

    async def query_keys(
        self, destination: str, device_keys: dict[str, list[str]], timeout_ms: int
    ) -> dict[str, Any]:
        raise RemoteUnavailable(self.REASON)

    async def claim_keys(
        self, destination: str, one_time_keys: dict[str, dict[str, str]], timeout_ms: int
    ) -> dict[str, Any]:
        raise RemoteUnavailable(self.REASON)
