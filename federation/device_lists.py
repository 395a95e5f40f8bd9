"""Remote device lists: the cache of other servers' users' devices and
cross-signing keys (server-server "Device Management").

Design note
-----------
A remote user is *tracked* once we hold their full list (a row in
``federation_remote_device_lists`` with the origin's ``stream_id``)::

    m.device_list_update (from the user's server, which thinks we share a room)
        tracked and every prev_id <= our stream_id -> apply this one device
        stream_id <= our stream_id                 -> old news, ignored
        otherwise (untracked, or a gap)             -> resync in the background:
            GET /_matrix/federation/v1/user/devices/{userId} -> replace everything

    m.signing_key_update: tracked -> store the new keys; untracked -> resync

Only users who share a room with one of ours are tracked: an update for
anyone else is ignored, and when the last shared room goes (their leave or
ours) the cached list is dropped, so a later /keys/query for them, after a
rejoin, fetches the list afresh instead of answering from one that stopped
being kept up to date. A /keys/query for a user we share a room with but do
not track yet resyncs first and answers from the fresh cache.

Every change also takes a position in the local device-list stream
(``e2e_device_list_stream``) for that user, so local clients see them in
``/keys/changes`` and ``/sync`` ``device_lists.changed``. Inbound
transactions of one origin are processed in order, so the updates of one
user never race each other; a resync marks the user busy and runs again
if more updates came in meanwhile. Keys are stored as served (opaque).

Among several processes (``homeserver/scaleout.py``) the background resyncs run on
the background lease's holder only: the others pass them on through ``hand_off``
(a row in ``federation_device_list_resyncs`` and a bus message), and the holder
deletes the row once its resync succeeded (``resync_wanted`` takes the rows up
again). A resync for a /keys/query answer stays where the query is answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from federation.client import encode_path
from federation.device_list_store import RemoteDevice, RemoteDeviceListStore
from federation.errors import EduRefused, FederationError
from homeserver.clock import Clock
from homeserver.events.identifiers import is_valid_user_id
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.storage.database import Database, Queries

log = logging.getLogger("myelin.federation.device_lists")

MAX_DEVICES = 1000
# Users resynced before one /keys/query answer (the rest are asked for directly).
MAX_QUERY_RESYNCS = 20
RESYNC_TIMEOUT_S = 30.0
# Asked-for resyncs (several processes) started per pass, and how often failed ones
# are tried again.
MAX_WANTED_RESYNCS = 1000
WANTED_RETRY_S = 60.0
CROSS_SIGNING_FIELDS = {"master_key": "master", "self_signing_key": "self_signing"}


class DeviceListStream(Protocol):
    """``DeviceKeysStore.bump_device_list``: a position in the local device-list stream."""

    async def bump_device_list(self, txn: Queries, user_id: str, device_ids: Any) -> int: ...
    async def bump_device_lists(self, txn: Queries, user_ids: Sequence[str]) -> int: ...


class JsonGetter(Protocol):
    async def get_json(self, destination: str, path: str, *, timeout_s: float = ...) -> Any: ...


Notify = Callable[[str, list[str]], Awaitable[None]]


def server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1]


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _device_keys(keys: Any, user_id: str, device_id: str) -> dict[str, Any] | None:
    """The device's keys as served, unless they claim to be another user's or device's.

    Checking them further (signatures, required fields) is the clients' job (spec:
    "Downloading keys"); Synapse relays them as served too."""
    if not isinstance(keys, dict):
        return None
    if keys.get("user_id", user_id) != user_id or keys.get("device_id", device_id) != device_id:
        return None
    return keys


def _cross_signing(content: dict[str, Any], user_id: str) -> dict[str, dict[str, Any]]:
    out = {}
    for field, usage in CROSS_SIGNING_FIELDS.items():
        key = content.get(field)
        if isinstance(key, dict) and key.get("user_id") == user_id:
            out[usage] = key
    return out


class RemoteDeviceLists:
    def __init__(
        self,
        db: Database,
        store: RemoteDeviceListStore,
        stream: DeviceListStream,
        client: JsonGetter,
        clock: Clock,
        notify: Notify,
        server_name: str,
    ) -> None:
        self.server_name = server_name
        self.db = db
        self.store = store
        self.stream = stream
        self.client = client
        self.clock = clock
        self.notify = notify
        self._resyncing: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        # Several processes (homeserver/scaleout.py): the background lease's holder runs
        # the resyncs; the others hand theirs over with this. None: resync here.
        self.hand_off: Callable[[str], Awaitable[None]] | None = None

    # ------------------------------------------------------------ inbound EDUs

    async def on_device_list_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = content.get("user_id")
        device_id = content.get("device_id")
        stream_id = _int(content.get("stream_id"))
        prev_ids = content.get("prev_id", [])
        if not _of_origin(user_id, origin):
            raise EduRefused("user is not of the origin server")
        if (
            not isinstance(device_id, str)
            or not device_id
            or stream_id is None
            or not isinstance(prev_ids, list)
            or any(_int(p) is None for p in prev_ids)
        ):
            raise EduRefused("malformed")
        assert isinstance(user_id, str)
        if user_id in self._resyncing:
            self._again.add(user_id)
            return
        if not await self.shares_room(user_id):
            return
        known = (await self.store.stream_ids([user_id])).get(user_id)
        if known is not None and stream_id <= known:
            return
        if known is None or any(p > known for p in prev_ids):
            await self._resync_somewhere(user_id)
            return
        name = content.get("device_display_name")
        async with self.db.transaction() as txn:
            if content.get("deleted") is True:
                await self.store.delete_device(txn, user_id, device_id)
            else:
                keys = _device_keys(content.get("keys"), user_id, device_id)
                device = RemoteDevice(
                    user_id, device_id, name if isinstance(name, str) else None, keys
                )
                await self.store.put_device(txn, device)
            await self.store.set_stream_id(txn, user_id, stream_id, self.clock.now_ms())
            await self.stream.bump_device_list(txn, user_id, [device_id])
        await self.notify(user_id, [device_id])

    async def on_signing_key_update(self, origin: str, content: dict[str, Any]) -> None:
        user_id = content.get("user_id")
        if not _of_origin(user_id, origin):
            raise EduRefused("user is not of the origin server")
        assert isinstance(user_id, str)
        keys = _cross_signing(content, user_id)
        if not keys:
            return
        if user_id in self._resyncing:
            self._again.add(user_id)
            return
        if not await self.shares_room(user_id):
            return
        if user_id not in await self.store.stream_ids([user_id]):
            await self._resync_somewhere(user_id)
            return
        async with self.db.transaction() as txn:
            for usage, key in keys.items():
                await self.store.put_cross_signing(txn, user_id, usage, key)
            await self.stream.bump_device_list(txn, user_id, [])
        await self.notify(user_id, [])

    async def room_mates_arrived(self, user_ids: list[str]) -> None:
        """Members a partial-state join's merge added (``PartialStateJoins.merged_hooks``):
        their memberships carry the join's position, so our members' /sync never saw
        them arrive; a device-list change of each tells clients to ask for their keys
        (E2EE rooms encrypt for them). One wake for all: they share the one room."""
        remote = sorted({u for u in user_ids if server_of(u) != self.server_name})
        if not remote:
            return
        async with self.db.transaction() as txn:
            # Two statements for all of them, not two each (thousands in a big room).
            await self.stream.bump_device_lists(txn, remote)
        await self.notify(remote[0], [])

    # ------------------------------------------------------------ room sharing

    async def shares_room(self, user_id: str) -> bool:
        return bool(await self.store.shared_with_local([user_id], self.server_name))

    async def on_event(self, stored: StoredEvent, room: RoomInfo) -> None:
        """After a leave or ban (theirs or one of ours): drop the lists of the users
        we no longer share any room with (``RoomService.event_persisted_hooks``)."""
        ev = stored.event
        if ev.type != "m.room.member" or ev.state_key is None:
            return
        if ev.content.get("membership") not in ("leave", "ban"):
            return
        if server_of(ev.state_key) == self.server_name:
            candidates = await self.store.tracked_in_room(room.room_nid)
        else:
            candidates = [ev.state_key]
        if not candidates:
            return
        shared = await self.store.shared_with_local(candidates, self.server_name)
        gone = [u for u in candidates if u not in shared]
        if gone:
            async with self.db.transaction() as txn:
                await self.store.forget(txn, gone)

    async def track_for_query(self, user_ids: list[str], timeout_s: float) -> None:
        """Before answering /keys/query: resync the users we share a room with but do
        not track yet, so the answer comes from (and fills) the cache. A failed
        resync leaves the user untracked (the caller then asks their server)."""
        tracked = await self.store.stream_ids(user_ids)
        untracked = [u for u in user_ids if u not in tracked]
        wanted = await self.store.shared_with_local(untracked, self.server_name)

        async def one(user_id: str) -> None:
            try:
                await self.resync(user_id, timeout_s)
            except FederationError as e:
                log.info("device list resync from %s failed: %s", e.destination, e.error)

        todo = [u for u in untracked if u in wanted][:MAX_QUERY_RESYNCS]
        await asyncio.gather(*(one(u) for u in todo))

    # ------------------------------------------------------------ resync

    async def _resync_somewhere(self, user_id: str) -> None:
        if self.hand_off is not None:
            await self.hand_off(user_id)
        else:
            self.resync_soon(user_id)

    async def resync_wanted(self) -> None:
        """Start the resyncs that processes asked the background lease's holder for
        (and that are not done yet: a failed one stays asked for)."""
        for user_id in await self.store.wanted_resyncs(MAX_WANTED_RESYNCS):
            self.resync_soon(user_id)

    async def retry_wanted(self, interval_s: float = WANTED_RETRY_S) -> None:
        """The background lease's holder: take up asked-for resyncs that failed again
        from time to time, until cancelled with the lease."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.resync_wanted()
            except Exception:
                log.exception("device list resyncs: reading the requests failed")

    def resync_soon(self, user_id: str) -> None:
        """Fetch the user's whole list in the background (at most one fetch per user)."""
        if user_id in self._resyncing:
            self._again.add(user_id)
            return
        self._resyncing[user_id] = asyncio.get_running_loop().create_task(
            self._resync_loop(user_id), name=f"device-list-resync:{user_id}"
        )

    async def _resync_loop(self, user_id: str) -> None:
        try:
            while True:
                self._again.discard(user_id)
                started = self.clock.now_ms()
                try:
                    await self.resync(user_id)
                    if self.hand_off is not None:
                        await self.store.resync_done(user_id, started)
                except FederationError as e:
                    log.info("device list resync from %s failed: %s", e.destination, e.error)
                except Exception:
                    log.exception("device list resync failed")
                if user_id not in self._again:
                    return
        finally:
            self._resyncing.pop(user_id, None)

    async def resync(self, user_id: str, timeout_s: float = RESYNC_TIMEOUT_S) -> None:
        """``GET /user/devices/{userId}`` and replace the cached list; raises FederationError."""
        path = encode_path("_matrix", "federation", "v1", "user", "devices", user_id)
        answer = await self.client.get_json(server_of(user_id), path, timeout_s=timeout_s)
        if not isinstance(answer, dict) or answer.get("user_id") != user_id:
            raise FederationError(server_of(user_id), "malformed /user/devices answer")
        stream_id = _int(answer.get("stream_id")) or 0
        devices: list[RemoteDevice] = []
        raw_devices = answer.get("devices")
        for d in raw_devices[:MAX_DEVICES] if isinstance(raw_devices, list) else []:
            device_id = d.get("device_id") if isinstance(d, dict) else None
            if not isinstance(device_id, str) or not device_id:
                continue
            name = d.get("device_display_name")
            devices.append(
                RemoteDevice(
                    user_id,
                    device_id,
                    name if isinstance(name, str) else None,
                    _device_keys(d.get("keys"), user_id, device_id),
                )
            )
        async with self.db.transaction() as txn:
            await self.store.replace_user(
                txn,
                user_id,
                stream_id,
                devices,
                _cross_signing(answer, user_id),
                self.clock.now_ms(),
            )
            await self.stream.bump_device_list(txn, user_id, [d.device_id for d in devices])
        await self.notify(user_id, [d.device_id for d in devices])

    # ------------------------------------------------------------ reads

    async def cached_query(
        self, device_keys: dict[str, list[str]]
    ) -> tuple[dict[str, Any], list[str]]:
        """The ``/user/keys/query`` answer for the tracked users among ``device_keys``,
        and the users that are not tracked (to be fetched from their server)."""
        tracked = await self.store.stream_ids(list(device_keys))
        users = [u for u in device_keys if u in tracked]
        answer: dict[str, Any] = {
            "device_keys": {u: {} for u in users},
            "master_keys": {},
            "self_signing_keys": {},
        }
        for d in await self.store.devices_of(users):
            wanted = device_keys[d.user_id]
            if d.keys is None or (wanted and d.device_id not in wanted):
                continue
            keys = dict(d.keys)
            if d.display_name is not None:
                keys["unsigned"] = {"device_display_name": d.display_name}
            answer["device_keys"][d.user_id][d.device_id] = keys
        for user_id, by_usage in (await self.store.cross_signing_of(users)).items():
            for usage, key in by_usage.items():
                answer[f"{usage}_keys"][user_id] = key
        return answer, [u for u in device_keys if u not in tracked]

    async def close(self) -> None:
        tasks = list(self._resyncing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _of_origin(user_id: Any, origin: str) -> bool:
    """A server speaks only for its own users."""
    return (
        isinstance(user_id, str)
        and is_valid_user_id(user_id, strict=False)
        and server_of(user_id) == origin
    )
