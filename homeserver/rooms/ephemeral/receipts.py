"""Read receipts and read markers (spec: client-server "Receipts", "Read and unread markers").

``send_receipt`` and ``set_read_markers`` are the client API; both check
the receipt type, the event id grammar and the thread id before anything
else, then membership and that the events are in the room, and only then
write, so a refused request changes nothing.

``m.fully_read`` is room account data, not a receipt: it is written
through the injected ``SetRoomAccountData`` and never appears under
``m.receipt``. ``m.read.private`` is stored like ``m.read`` but only its
owner ever sees it (``receipts_since`` filters in SQL) and it is never
federated (``public_receipts_between`` reads ``m.read`` only).

A newer receipt replaces the older one of the same (type, user, thread)
unless it names an event earlier in the room's stream order than the stored
one does (the store's upsert leaves that one in place, as Synapse does: a
device that lags behind cannot move the user's receipt back; the spec's
lagging ``m.read`` versus ``m.read.private`` are two types, unaffected).
Whether the event belongs to the ``thread_id`` is not checked either: it
needs the relations index of the room service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from homeserver.clock import Clock
from homeserver.errors import forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_event_id
from homeserver.rooms.ephemeral.interfaces import EventInRoom, IsJoined, SetRoomAccountData
from homeserver.rooms.ephemeral.receipts_store import ReceiptRecord, ReceiptStore

log = logging.getLogger("myelin.receipts")

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
RECEIPT_TYPES = (READ, READ_PRIVATE)
MAIN_THREAD = "main"

ReceiptHook = Callable[[ReceiptRecord], None]


def check_event_id(event_id: Any, field: str = "event_id") -> str:
    """Event id grammar of the room versions we serve (v4+ format)."""
    if not isinstance(event_id, str) or not is_valid_event_id(event_id):
        raise invalid_param(f"'{field}' is not a valid event ID")
    return event_id


def check_thread_id(thread_id: Any, receipt_type: str) -> str | None:
    """``None`` (unthreaded), ``main`` or a thread root's event id (spec: threaded receipts)."""
    if thread_id is None:
        return None
    if not isinstance(thread_id, str) or not thread_id:
        raise invalid_param("thread_id field must be a non-empty string")
    if receipt_type not in RECEIPT_TYPES:
        raise invalid_param(f"thread_id is not allowed for {receipt_type}")
    if thread_id != MAIN_THREAD and not is_valid_event_id(thread_id):
        raise invalid_param("thread_id must be 'main' or a thread root's event ID")
    return thread_id


def receipt_content(records: Iterable[ReceiptRecord]) -> dict[str, Any]:
    """The ``content`` of an ``m.receipt`` event:
    ``{event_id: {receipt_type: {user_id: {ts, thread_id?}}}}``.

    ``records`` in stream order. One user's receipts of one type on the same
    event in two threads cannot both fit this shape; the later one wins.
    """
    content: dict[str, Any] = {}
    for r in records:
        entry: dict[str, Any] = {"ts": r.ts}
        if r.thread_id is not None:
            entry["thread_id"] = r.thread_id
        content.setdefault(r.event_id, {}).setdefault(r.receipt_type, {})[r.user_id] = entry
    return content


def edu_content(records: Iterable[ReceiptRecord]) -> dict[str, Any]:
    """The ``content`` of a federation ``m.receipt`` EDU (``m.read`` only):
    ``{room_id: {"m.read": {user_id: {event_ids: [...], data: {ts, thread_id?}}}}}``."""
    content: dict[str, Any] = {}
    for r in records:
        if r.receipt_type != READ:
            continue
        data: dict[str, Any] = {"ts": r.ts}
        if r.thread_id is not None:
            data["thread_id"] = r.thread_id
        users = content.setdefault(r.room_id, {}).setdefault(READ, {})
        users[r.user_id] = {"event_ids": [r.event_id], "data": data}
    return content


class ReceiptService:
    def __init__(
        self,
        store: ReceiptStore,
        clock: Clock,
        is_joined: IsJoined,
        event_in_room: EventInRoom,
        set_room_account_data: SetRoomAccountData,
    ) -> None:
        self.store = store
        self.clock = clock
        self.is_joined = is_joined
        self.event_in_room = event_in_room
        self.set_room_account_data = set_room_account_data
        self.change_hooks: list[ReceiptHook] = []

    # ------------------------------------------------------------ client writes

    async def send_receipt(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: Any = None,
    ) -> None:
        """``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``."""
        if receipt_type not in (*RECEIPT_TYPES, FULLY_READ):
            raise invalid_param(f"Unknown receipt type {receipt_type[:64]!r}")
        check_event_id(event_id)
        thread = check_thread_id(thread_id, receipt_type)
        await self._check_room(user_id, room_id, [event_id], thread)
        if receipt_type == FULLY_READ:
            await self.set_room_account_data(user_id, room_id, FULLY_READ, {"event_id": event_id})
        else:
            await self.record(user_id, room_id, receipt_type, event_id, thread)

    async def set_read_markers(
        self,
        user_id: str,
        room_id: str,
        fully_read: str | None,
        read: str | None,
        read_private: str | None,
    ) -> None:
        """``POST /rooms/{roomId}/read_markers``: receipts as ``/receipt`` would set them."""
        given = {FULLY_READ: fully_read, READ: read, READ_PRIVATE: read_private}
        for field, event_id in given.items():
            if event_id is not None:
                check_event_id(event_id, field)
        event_ids = [e for e in given.values() if e is not None]
        if not event_ids:
            return
        await self._check_room(user_id, room_id, event_ids, None)
        if fully_read is not None:
            await self.set_room_account_data(user_id, room_id, FULLY_READ, {"event_id": fully_read})
        for receipt_type in RECEIPT_TYPES:
            event_id = given[receipt_type]
            if event_id is not None:
                await self.record(user_id, room_id, receipt_type, event_id, None)

    async def _check_room(
        self, user_id: str, room_id: str, event_ids: Sequence[str], thread_id: str | None
    ) -> None:
        if not await self.is_joined(user_id, room_id):
            raise forbidden("You are not joined to this room")
        for event_id in dict.fromkeys(event_ids):
            if not await self.event_in_room(room_id, event_id):
                raise not_found("Event not found in this room")
        if thread_id not in (None, MAIN_THREAD) and not await self.event_in_room(
            room_id, str(thread_id)
        ):
            raise invalid_param("thread_id is not an event in this room")

    # ------------------------------------------------------------ unchecked write

    async def record(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int | None = None,
    ) -> ReceiptRecord | None:
        """Store a receipt without checks (callers: the checked client paths above,
        and the federation receiver after its own origin and membership checks);
        None when it would move the receipt backwards (nothing stored, nobody told)."""
        stamp = self.clock.now_ms() if ts is None else ts
        rec = await self.store.upsert(room_id, receipt_type, user_id, thread_id, event_id, stamp)
        if rec is None:
            return None
        for hook in list(self.change_hooks):
            try:
                hook(rec)
            except Exception:
                log.exception("receipt hook failed")
        return rec

    # ------------------------------------------------------------ reads

    async def current_position(self) -> int:
        return await self.store.current_position()

    async def receipts_since(
        self,
        room_ids: Sequence[str],
        since_pos: int,
        for_user: str,
        upto_pos: int | None = None,
    ) -> dict[str, dict[str, Any]]:
        """``{room_id: m.receipt content}`` of receipts after ``since_pos`` (up to
        ``upto_pos``, default now) in ``room_ids``, as ``for_user`` may see them."""
        upto = await self.store.current_position() if upto_pos is None else upto_pos
        if not room_ids or since_pos >= upto:
            return {}
        by_room: dict[str, list[ReceiptRecord]] = {}
        for rec in await self.store.since(room_ids, since_pos, upto, for_user):
            by_room.setdefault(rec.room_id, []).append(rec)
        return {room_id: receipt_content(recs) for room_id, recs in by_room.items()}

    async def public_receipts_between(
        self, since_pos: int, upto_pos: int, limit: int = 1000
    ) -> list[ReceiptRecord]:
        """``m.read`` receipts in a stream range, for the federation sender
        (``edu_content`` shapes them; the sender keeps only its own users')."""
        return await self.store.range_of_type(READ, since_pos, upto_pos, limit)
