"""Inbound transactions: ``PUT /_matrix/federation/v1/send/{txnId}``.

Design note
-----------
::

    authenticated request (X-Matrix) -> origin
        shape and size checks (<= 50 PDUs, <= 100 EDUs, origin matches)  else 400
        per-origin lock: one transaction of an origin at a time, in order
            seen (origin, txnId) before?  -> the stored answer, nothing redone
            global semaphore: at most N transactions processed at once
                PDUs: grouped by room; rooms concurrently, each room in order,
                      through ``room_pdus_handler(origin, pdus) -> [error | None]``
                      (chains of PDUs persisted together), else each through
                      ``pdu_handler(origin, pdu) -> error | None``
                EDUs: in order, each through ``InboundEdus.handle``
            store the answer under (origin, txnId), then answer it
        the origin is alive: cut our sender's back-off to it short

A flooding origin holds at most one processing slot at a time (its own
lock), so it cannot starve other origins beyond its share.

PDUs belong to the rooms area: ``pdu_handler`` is the seam, set by
``Federation.attach_rooms`` to ``FederatedRooms.handle_pdu`` (the PDU
pipeline). The answer is keyed by event id, computed by ``event_id_of``
(``FederatedRooms.event_id_of``: under the room's version). Without rooms
attached (a receiver built alone), each PDU is refused with an honest
per-PDU error and named under the room version 11/12 rules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from federation.auth import authenticated, signed_content
from federation.inbound_edus import InboundEdus
from federation.outbox_store import OutboxStore
from homeserver.clock import Clock
from homeserver.errors import MatrixError, bad_json, invalid_param
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.events.signing import compute_event_id
from homeserver.http.shell import json_response

log = logging.getLogger("myelin.federation.receiver")

MAX_PDUS = 50
MAX_EDUS = 100
MAX_TXN_ID_LENGTH = 255

# (origin, pdu) -> None when accepted, else the error for that PDU's entry.
PduHandler = Callable[[str, dict[str, Any]], Awaitable[str | None]]
# (origin, one room's PDUs in order) -> each one's result, as ``PduHandler`` gives it.
RoomPdusHandler = Callable[[str, list[dict[str, Any]]], Awaitable[list[str | None]]]
# pdu -> its event id (None: it cannot be named, and gets no entry).
EventIdOf = Callable[[dict[str, Any]], Awaitable[str | None]]


async def refuse_pdus(origin: str, pdu: dict[str, Any]) -> str | None:
    """The PDU seam with no rooms attached: nothing is accepted, and we say so."""
    return "room events are not accepted by this receiver"


async def event_id_v11(pdu: dict[str, Any]) -> str | None:
    """The event id of a PDU whose room version is unknown: the id it carries
    (room versions 1-2 put it in the PDU), else the hash id under the
    redaction rules of room versions 11 and 12."""
    carried = pdu.get("event_id")
    if isinstance(carried, str) and carried.startswith("$") and ":" in carried:
        return carried
    try:
        return compute_event_id(pdu, KNOWN_ROOM_VERSIONS["11"])
    except (TypeError, ValueError, KeyError):
        return None


class TransactionReceiver:
    def __init__(
        self,
        server_name: str,
        store: OutboxStore,
        edus: InboundEdus,
        clock: Clock,
        *,
        max_concurrent: int = 20,
        peer_seen: Callable[[str], None] = lambda origin: None,
    ) -> None:
        self.server_name = server_name
        self.store = store
        self.edus = edus
        self.clock = clock
        self.peer_seen = peer_seen
        self.pdu_handler: PduHandler = refuse_pdus
        self.event_id_of: EventIdOf = event_id_v11
        # One room's PDUs of a transaction at once, in order (the pipeline's chains);
        # None: each through ``pdu_handler``.
        self.room_pdus_handler: RoomPdusHandler | None = None
        self._slots = asyncio.Semaphore(max_concurrent)
        self._origin_locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def _origin_lock(self, origin: str) -> AsyncIterator[None]:
        lock, users = self._origin_locks.get(origin, (asyncio.Lock(), 0))
        self._origin_locks[origin] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._origin_locks[origin]
            if users <= 1:
                del self._origin_locks[origin]
            else:
                self._origin_locks[origin] = (lock, users - 1)

    async def receive(self, origin: str, txn_id: str, body: Any) -> dict[str, Any]:
        """Process one transaction (or answer a repeat); raises MatrixError 400 on bad shape."""
        try:
            pdus, edus = check_transaction(origin, txn_id, body)
        except MatrixError as e:
            log.info("refused a transaction from %s: %s", origin, e.error)
            raise
        async with self._origin_lock(origin):
            answer = await self.store.inbound_response(origin, txn_id)
            if answer is None:
                async with self._slots:
                    answer = {"pdus": await self._pdus(origin, pdus)}
                    for edu in edus:
                        await self.edus.handle(origin, edu)
                await self.store.store_inbound_response(origin, txn_id, answer, self.clock.now_ms())
        self.peer_seen(origin)
        return answer

    async def _pdus(self, origin: str, pdus: list[Any]) -> dict[str, Any]:
        by_room: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for pdu in pdus:
            event_id = await self.event_id_of(pdu) if isinstance(pdu, dict) else None
            if event_id is None:
                log.info("unnameable PDU from %s skipped", origin)
                continue
            room_id = pdu.get("room_id")
            by_room.setdefault(room_id if isinstance(room_id, str) else "", []).append(
                (event_id, pdu)
            )
        results: dict[str, Any] = {}

        async def one_room(items: list[tuple[str, dict[str, Any]]]) -> None:
            if self.room_pdus_handler is not None:
                try:
                    errors = await self.room_pdus_handler(origin, [pdu for _i, pdu in items])
                except Exception:
                    # What it persisted is known now: the one-by-one path answers it.
                    log.exception("PDU batch handler failed for PDUs from %s", origin)
                else:
                    for (event_id, _pdu), error in zip(items, errors, strict=True):
                        results[event_id] = {} if error is None else {"error": error}
                    return
            for event_id, pdu in items:
                try:
                    error = await self.pdu_handler(origin, pdu)
                except Exception:
                    log.exception("PDU handler failed for a PDU from %s", origin)
                    error = "internal error while processing the event"
                results[event_id] = {} if error is None else {"error": error}

        await asyncio.gather(*(one_room(items) for items in by_room.values()))
        return results


def check_transaction(origin: str, txn_id: str, body: Any) -> tuple[list[Any], list[Any]]:
    """The PDUs and EDUs of a well-formed transaction body, else a 400."""
    if not txn_id or len(txn_id) > MAX_TXN_ID_LENGTH:
        raise invalid_param("Invalid transaction id")
    if not isinstance(body, dict):
        raise bad_json("Transaction body must be a JSON object")
    if body.get("origin", origin) != origin:
        raise bad_json("Transaction 'origin' does not match the authenticated origin")
    pdus = body.get("pdus", [])
    edus = body.get("edus", [])
    if not isinstance(pdus, list) or not isinstance(edus, list):
        raise bad_json("'pdus' and 'edus' must be lists")
    if len(pdus) > MAX_PDUS:
        raise bad_json(f"A transaction carries at most {MAX_PDUS} PDUs")
    if len(edus) > MAX_EDUS:
        raise bad_json(f"A transaction carries at most {MAX_EDUS} EDUs")
    return pdus, edus


class TransactionApi:
    def __init__(self, receiver: TransactionReceiver) -> None:
        self.receiver = receiver

    def routes(self) -> list[web.RouteDef]:
        return [web.put("/_matrix/federation/v1/send/{txnId}", authenticated(self.send))]

    async def send(self, request: web.Request, origin: str) -> web.Response:
        answer = await self.receiver.receive(
            origin, request.match_info["txnId"], signed_content(request)
        )
        return json_response(answer)
