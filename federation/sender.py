"""Outbound transactions: per-destination queues, back-off, catch-up.

Design note
-----------
::

    enqueue_edu / enqueue_pdu / enqueue_pdu_in (inside the event's persist
    transaction) / e2ee to-device outbox hook
        |  1. the item is written to the database (federation_outbox, or
        |     e2e_to_device_outbox by the e2ee area) -- nothing is sent first
        |  2. wake(destination): start its task, or set its Event (after the
        |     commit, for enqueue_pdu_in)
        v
    one task per destination with something to send (none when idle):
        loop:
            batch <- oldest <= 50 PDUs and <= 100 EDUs (to-device first, up to 50)
            nothing? -> the task ends (a later enqueue starts a new one)
            PUT /_matrix/federation/v1/send/{txnId}  (under a global semaphore)
            2xx      -> delete the rows of the batch, next batch
            failure  -> keep the batch (same txnId), sleep min_retry * 2^n with
                        jitter (capped at max_retry; a 429's retry_after_ms wins),
                        woken early when the peer contacts us (``peer_is_back``)
            400/404/413 -> the peer refuses this batch for good: dropped, logged

Several processes (README "Scaling out"): each destination belongs to one
sender shard (``homeserver.process_roles.shard_of``), and a process sends only
while it holds that shard's lease (``owns``, answered from memory and asked
again before every transaction, so a process that lost its lease stops at the
next batch). Wakes for a destination this process does not own go to the bus
(``forward``); the owner's process wakes it. A process that gains a shard (at
start, or taking over from a dead one) resumes every destination of it from the
database. Transaction ids are made from the outbox rows they carry (their ids
and content), so the process that takes over
rebuilds a batch that was in flight when its owner died with the same id, and
the receiver answers it from its (origin, txnId) record instead of again.

A dead peer only ever holds its own task; other destinations run freely,
bounded by the global limit on concurrent transactions. Rows are deleted
only after the destination acknowledged them, so after a restart
``start()`` resumes every destination that still has rows: catch-up is the
normal loop. A retried batch keeps its transaction id, so the receiver's
de-duplication by (origin, txnId) applies; items are also idempotent on
their own (event ids, to-device message ids, typing/receipt state).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from federation.client import encode_path
from federation.errors import FederationError
from federation.outbox_store import EDU, PDU, OutboxStore
from homeserver.clock import Clock
from homeserver.logs import new_request_id, request_id
from homeserver.storage.database import Queries

log = logging.getLogger("myelin.federation.sender")

MAX_PDUS = 50
MAX_EDUS = 100
MAX_TO_DEVICE_PER_TXN = 50
TRANSACTION_TIMEOUT_S = 60.0
PERMANENT_REFUSALS = (400, 404, 413)


class ToDeviceOutbox(Protocol):
    """The e2ee area's to-device outbox (``ToDeviceStore``)."""

    async def outbox_pending(
        self, destination: str, after_id: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]: ...

    async def outbox_delete(self, destination: str, outbox_ids: list[int]) -> None: ...

    async def outbox_destinations(self) -> list[str]: ...

    async def outbox_size(self) -> int: ...


class TransactionClient(Protocol):
    async def put_json(
        self, destination: str, path: str, body: Any, *, timeout_s: float = ...
    ) -> Any: ...


@dataclass(frozen=True)
class Backoff:
    """Exponential back-off with jitter: attempt n waits in [base/2, base],
    base = min(max_ms, min_ms * 2^(n-1))."""

    min_ms: int
    max_ms: int
    rng: random.Random = field(default_factory=random.Random)

    def delay_ms(self, failures: int, retry_after_ms: int | None = None) -> int:
        exponent = min(max(failures - 1, 0), 40)
        base = min(self.max_ms, self.min_ms * (2**exponent))
        delay = int(base * self.rng.uniform(0.5, 1.0))
        if retry_after_ms is not None:
            delay = max(delay, min(retry_after_ms, self.max_ms))
        return max(delay, 1)


@dataclass
class Batch:
    """One transaction: its id, body, and the outbox rows it carries."""

    txn_id: str
    body: dict[str, Any]
    outbox_ids: list[int]
    to_device_ids: list[int]


def build_transaction(
    origin: str, now_ms: int, pdus: list[Any], edus: list[tuple[str, Any]]
) -> dict[str, Any]:
    """The body of ``PUT /send/{txnId}`` (server-server "Transactions")."""
    if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
        raise ValueError("too many items for one transaction")
    return {
        "origin": origin,
        "origin_server_ts": now_ms,
        "pdus": pdus,
        "edus": [{"edu_type": t, "content": c} for t, c in edus],
    }


@dataclass
class _Destination:
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    retry_now: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    failures: int = 0


class FederationSender:
    def __init__(
        self,
        server_name: str,
        store: OutboxStore,
        to_device: ToDeviceOutbox,
        client: TransactionClient,
        clock: Clock,
        *,
        min_retry_ms: int = 5_000,
        max_retry_ms: int = 3_600_000,
        max_concurrent: int = 50,
        rng: random.Random | None = None,
        allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.to_device = to_device
        self.client = client
        self.clock = clock
        self.backoff = Backoff(
            min_retry_ms, max(min_retry_ms, max_retry_ms), rng or random.Random()
        )
        self._slots = asyncio.Semaphore(max_concurrent)
        self._destinations: dict[str, _Destination] = {}
        self._closed = False
        # federation.allow_list / deny_list: nothing is queued for a refused server.
        self._allowed = allowed or (lambda _destination: True)
        # Several processes: hand wake-ups for destinations this process does not own
        # to the others (the bus), and ask ``owns`` before sending (None: owns all).
        self.forward: Callable[[list[str]], None] | None = None
        self.owns: Callable[[str], bool] | None = None
        # Called with the destination of every failed (to be retried) transaction.
        self.failure_hooks: list[Callable[[str], None]] = []

    # ------------------------------------------------------------ public API

    async def start(self) -> None:
        """Resume every destination that still has something queued (after a restart)."""
        pending = set(await self.store.destinations())
        pending |= set(await self.to_device.outbox_destinations())
        self.wake_owned(sorted(pending))

    def wake_owned(self, destinations: Iterable[str]) -> None:
        """Wake the destinations this process sends for; never forward the others
        (this is how a forwarded wake or a resume arrives: forwarding would echo)."""
        for destination in destinations:
            if self._owned(destination):
                self._wake_here(destination)

    def _owned(self, destination: str) -> bool:
        return self.owns is None or self.owns(destination)

    async def enqueue_edu(
        self, destination: str, edu_type: str, content: dict[str, Any], key: str | None = None
    ) -> None:
        """Persist one EDU for ``destination``, then wake its sender.

        ``key`` coalesces: an unsent EDU of the same type and key is replaced
        (typing per room and user, presence per user)."""
        if destination == self.server_name or not self._allowed(destination):
            return
        await self.store.add_edu(destination, edu_type, content, key, self.clock.now_ms())
        self.wake(destination)

    async def enqueue_pdu(self, destinations: Iterable[str], pdu: dict[str, Any]) -> None:
        """Persist one PDU (the event JSON as sent over federation) for every
        destination but ourselves, then wake their senders."""
        targets = self._targets(destinations)
        if not targets:
            return
        await self.store.add_pdus(targets, pdu, self.clock.now_ms())
        for destination in targets:
            self.wake(destination)

    async def enqueue_pdu_in(
        self, q: Queries, destinations: Iterable[str], pdu: dict[str, Any]
    ) -> Callable[[], None] | None:
        """Persist one PDU inside the caller's transaction (the event's own);
        the returned callback wakes the senders and must run after the commit."""
        targets = self._targets(destinations)
        if not targets:
            return None
        await self.store.add_pdus_in(q, targets, pdu, self.clock.now_ms())
        return partial(self.wake_all, targets)

    def _targets(self, destinations: Iterable[str]) -> list[str]:
        return sorted({d for d in destinations if d != self.server_name and self._allowed(d)})

    async def joined_servers_in(self, q: Queries, room_nid: int) -> set[str]:
        return await self.store.joined_servers_in(q, room_nid)

    def wake_all(self, destinations: Iterable[str]) -> None:
        for destination in destinations:
            self.wake(destination)

    async def on_to_device_outbox(self, destination: str) -> None:
        """``ToDeviceService.outbox_hooks``: rows were committed for ``destination``."""
        if destination != self.server_name:
            self.wake(destination)

    def wake(self, destination: str) -> None:
        """Something new is queued for ``destination``: make sure its task runs."""
        if self._closed or not self._allowed(destination):
            return
        if not self._owned(destination):
            if self.forward is not None:
                self.forward([destination])
            return
        self._wake_here(destination)

    def _wake_here(self, destination: str) -> None:
        if self._closed or not self._allowed(destination):
            return
        state = self._destinations.setdefault(destination, _Destination())
        state.wake.set()
        if state.task is None:
            state.task = asyncio.get_running_loop().create_task(
                self._run(destination, state), name=f"federation-send:{destination}"
            )

    def peer_is_back(self, destination: str) -> None:
        """The peer just talked to us: cut a back-off wait short and retry now."""
        state = self._destinations.get(destination)
        if state is not None and state.failures:
            state.failures = 0
            state.retry_now.set()

    def busy_destinations(self) -> set[str]:
        """Destinations whose task is running: something is queued or being sent."""
        return {d for d, s in self._destinations.items() if s.task is not None}

    def backing_off(self) -> int:
        """How many destinations wait to retry after a failed transaction."""
        return sum(1 for s in self._destinations.values() if s.failures and s.task is not None)

    async def queue_depth(self) -> dict[str, int]:
        """Items waiting for other servers, per kind: pdu, edu, to_device."""
        depth = await self.store.depth_by_kind()
        depth["to_device"] = await self.to_device.outbox_size()
        return depth

    def failures(self, destination: str) -> int:
        state = self._destinations.get(destination)
        return 0 if state is None else state.failures

    async def close(self) -> None:
        self._closed = True
        tasks = [s.task for s in self._destinations.values() if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ------------------------------------------------------------ the loop

    async def _run(self, destination: str, state: _Destination) -> None:
        # Log lines of this task carry its own id, not that of the request that woke it.
        request_id.set(new_request_id("send"))
        try:
            batch: Batch | None = None
            # ``_closed`` is checked on every turn, not only left to cancel(): on Python
            # 3.11 a cancel() that lands as the back-off timeout fires comes out of
            # asyncio.timeout() as TimeoutError, and a loop relying on cancellation alone
            # would go on retrying, so close() would wait for it forever.
            while not self._closed:
                if not self._owned(destination):
                    # The shard's lease ran out (or went to its home process): the
                    # new holder resumes from the rows, which are still there.
                    return
                if batch is None:
                    state.wake.clear()
                    batch = await self._next_batch(destination)
                    if batch is None:
                        if state.wake.is_set():
                            continue
                        return
                delay = await self._attempt(destination, state, batch)
                if delay is None:
                    batch = None
                    continue
                state.retry_now.clear()
                try:
                    async with asyncio.timeout(delay / 1000):
                        await state.retry_now.wait()
                except TimeoutError:
                    pass
        except asyncio.CancelledError:
            raise
        except Exception:
            # Database trouble: give up this round; the rows stay, the next wake retries.
            log.exception("federation sender for %s stopped", destination)
        finally:
            state.task = None

    async def _attempt(self, destination: str, state: _Destination, batch: Batch) -> int | None:
        """Send ``batch``; None when done with it, else the delay before retrying."""
        path = encode_path("_matrix", "federation", "v1", "send", batch.txn_id)
        try:
            async with self._slots:
                answer = await self.client.put_json(
                    destination, path, batch.body, timeout_s=TRANSACTION_TIMEOUT_S
                )
        except FederationError as e:
            if e.status in PERMANENT_REFUSALS:
                log.warning(
                    "%s refused transaction %s (%s): dropping %d items",
                    destination,
                    batch.txn_id,
                    e.status,
                    len(batch.outbox_ids) + len(batch.to_device_ids),
                )
                await self._ack(destination, batch)
                return None
            state.failures += 1
            for hook in self.failure_hooks:
                hook(destination)
            delay = self.backoff.delay_ms(state.failures, e.retry_after_ms)
            log.info(
                "transaction to %s failed (%s); attempt %d, retry in %d ms",
                destination,
                e.status or e.error,
                state.failures,
                delay,
            )
            return delay
        state.failures = 0
        _log_pdu_errors(destination, answer)
        await self._ack(destination, batch)
        return None

    async def _ack(self, destination: str, batch: Batch) -> None:
        if batch.outbox_ids:
            await self.store.ack(batch.outbox_ids)
        if batch.to_device_ids:
            await self.to_device.outbox_delete(destination, batch.to_device_ids)

    async def _next_batch(self, destination: str) -> Batch | None:
        pdus = await self.store.pending(destination, PDU, MAX_PDUS)
        to_device = await self.to_device.outbox_pending(destination, 0, MAX_TO_DEVICE_PER_TXN)
        edus = await self.store.pending(destination, EDU, MAX_EDUS - len(to_device))
        if not (pdus or to_device or edus):
            return None
        items: list[tuple[str, Any]] = [("m.direct_to_device", c) for _, c in to_device]
        items += [(r.edu_type or "", r.body) for r in edus]
        outbox_ids = [r.outbox_id for r in pdus] + [r.outbox_id for r in edus]
        to_device_ids = [i for i, _ in to_device]
        bodies = [r.body for r in pdus]
        return Batch(
            txn_id=transaction_id(outbox_ids, to_device_ids, [bodies, items]),
            body=build_transaction(self.server_name, self.clock.now_ms(), bodies, items),
            outbox_ids=outbox_ids,
            to_device_ids=to_device_ids,
        )


def transaction_id(outbox_ids: list[int], to_device_ids: list[int], content: Any) -> str:
    """The id of the transaction carrying exactly these rows: the same in every
    process (a takeover resends under the id the receiver already knows). Row ids
    are never reused, and the content is hashed in as well, so a database restored
    from a backup, whose ids start again below ids already sent, still never
    repeats an id that a receiver would take for a transaction it has seen."""
    ids = ",".join(map(str, outbox_ids)) + ";" + ",".join(map(str, to_device_ids))
    digest = hashlib.sha256(ids.encode())
    digest.update(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()[:32]


def _log_pdu_errors(destination: str, answer: Any) -> None:
    results = answer.get("pdus") if isinstance(answer, dict) else None
    if not isinstance(results, dict):
        return
    refused = [eid for eid, r in results.items() if isinstance(r, dict) and r.get("error")]
    if refused:
        log.info("%s refused %d of our PDUs", destination, len(refused))
