"""Group commit: the local sends waiting for one room are written together.

Design note
-----------
A room has one writer at a time (DESIGN "Linear rooms"). When many users send
into one room at once, each send used to take the room's lock in turn and
pay the whole round trip to the database for itself: read the extremities
and state, build, then one transaction. Here the sends queue per room, and
one drainer task per room takes them in batches::

    submit(req) ─> waiting[room] ─┐      (a drainer per room, while any wait)
    submit(req) ─> waiting[room] ─┼─> lock(room) ─> take_batch ─> run(batch)
    submit(req) ─> waiting[room] ─┘          ─> each request's future gets its
                                                event, or its own error

``run`` (``ChainWriter.run_batch``) builds the batch as a chain: the first event on the
room's extremities, each next one on the one before it, each checked against
the state before it, and persists the chain in one transaction, each event
with its own stream position, txn id and in-transaction hooks. A request
that fails its checks gets its error and drops out of the chain; the others
go on. The waiting requests' own tasks then run their after-persist work.

A batch is the longest run of waiting requests, in order, in which no state
key is set twice (so each event's ``_already_sent`` check and the state it
replaces are the committed ones), with at most ``MAX_BATCH`` requests. A
``solo`` request (one whose build runs caller code against the room state)
is a batch of its own. The drainer holds the room's asyncio lock for one
batch at a time, so the other writers of the room (federation, purges,
remote invites) waiting for it keep their turns. A caller that gives up (cancelled) leaves its
request behind; one not yet taken is skipped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from homeserver.events.model import Event
from homeserver.rooms.persist import TxnRef
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey

log = logging.getLogger("myelin.rooms.send_queue")

# Requests persisted in one transaction at most (bounds the time a batch holds the room).
MAX_BATCH: Final = 32
# Batches one drainer runs before handing the room to a fresh task (a bound, not a limit:
# the fresh task goes on with what still waits).
MAX_BATCHES_PER_DRAIN: Final = 1000


@dataclass(frozen=True, slots=True)
class EventRequest:
    """One local event to build and send into ``room``: what ``create_and_send`` was asked."""

    room: RoomInfo
    sender: str
    event_type: str
    content: dict[str, Any]
    state_key: str | None = None
    txn: TxnRef | None = None
    # Sees the state the event is built on (client-API rules that are not auth rules).
    precheck: Callable[[dict[StateKey, StoredEvent]], None] | None = None
    # A state event the same sender already set with the same content is not sent again.
    keep_unchanged: bool = False
    # Runs with the built, checked event before it is persisted; raising stops it.
    before_persist: Callable[[Event], Awaitable[None]] | None = None

    @property
    def state_tuple(self) -> StateKey | None:
        return None if self.state_key is None else (self.event_type, self.state_key)

    @property
    def solo(self) -> bool:
        """Runs caller code on the state it is built on: never batched with others."""
        return self.precheck is not None or self.before_persist is not None


# The event a request ended with, and whether this request sent it (False: a retried
# txn id, or an unchanged state event, answered with the event already there).
Outcome = tuple[StoredEvent, bool]
Result = Outcome | BaseException
RunBatch = Callable[[list[EventRequest]], Awaitable[Sequence[Result]]]
_Waiting = deque[tuple[EventRequest, "asyncio.Future[Outcome]"]]


def take_batch(
    waiting: _Waiting, limit: int = MAX_BATCH
) -> list[tuple[EventRequest, asyncio.Future[Outcome]]]:
    """Pop the next batch off ``waiting`` (see the design note); skips abandoned requests."""
    batch: list[tuple[EventRequest, asyncio.Future[Outcome]]] = []
    keys: set[StateKey] = set()
    for _ in range(len(waiting)):
        if len(batch) >= limit:
            break
        req, fut = waiting[0]
        if fut.done():  # its caller gave up before it was taken
            waiting.popleft()
            continue
        if req.solo:
            if not batch:
                batch.append(waiting.popleft())
            break
        key = req.state_tuple
        if key is not None:
            if key in keys:
                break
            keys.add(key)
        batch.append(waiting.popleft())
    return batch


class RoomSendQueues:
    """The waiting local sends of every room, and the drainer task of each busy room."""

    def __init__(self, run: RunBatch, lock: Callable[[str], asyncio.Lock]) -> None:
        self._run = run
        self._lock = lock
        self._waiting: dict[str, _Waiting] = {}
        self._drainers: dict[str, asyncio.Task[None]] = {}

    def waiting(self, room_id: str) -> int:
        """Requests of the room not yet taken into a batch."""
        return len(self._waiting.get(room_id, ()))

    async def submit(self, req: EventRequest) -> Outcome:
        """Queue ``req`` for its room; its event once committed (or its error)."""
        room_id = req.room.room_id
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(room_id, deque()).append((req, fut))
        if room_id not in self._drainers:
            self._start(room_id)
        return await fut

    def _start(self, room_id: str) -> None:
        self._drainers[room_id] = asyncio.create_task(self._drain(room_id))

    async def _drain(self, room_id: str) -> None:
        try:
            for _ in range(MAX_BATCHES_PER_DRAIN):
                # Taken again for each batch: the room's other writers, waiting for the
                # lock, get their turns between batches.
                async with self._lock(room_id):
                    waiting = self._waiting.get(room_id)
                    batch = take_batch(waiting) if waiting else []
                    if not batch:
                        break
                    await self._run_one(batch)
        except asyncio.CancelledError:  # shutting down: the waiting requests end too
            for _, fut in self._waiting.pop(room_id, ()):
                fut.cancel()
            raise
        finally:
            del self._drainers[room_id]
            if self._waiting.get(room_id):
                self._start(room_id)  # the bound was hit
            else:
                self._waiting.pop(room_id, None)

    async def _run_one(self, batch: list[tuple[EventRequest, asyncio.Future[Outcome]]]) -> None:
        try:
            results: Sequence[Result] = await self._run([req for req, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as e:  # run answers per request; this is a failure of all
            results = [e] * len(batch)
        for (_, fut), result in zip(batch, results, strict=True):
            if fut.done():
                continue
            if isinstance(result, BaseException):
                fut.set_exception(result)
            else:
                fut.set_result(result)
