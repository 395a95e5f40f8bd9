"""Per-room parts of a /sync answer that do not come from the room's events:
``ephemeral`` (``m.typing``, ``m.receipt``) and ``unread_notifications``.

Typing and receipts are read for all joined rooms at once (two calls), so
the builder also learns which rooms have something new for an incremental
sync. Private read receipts are only ever returned to their owner
(``ReceiptService.receipts_since`` filters in SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from homeserver.rooms.ephemeral.typing import STALE
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.sync.model import SyncContext, SyncSources
from homeserver.userdata.filtering import event_matches


class RoomExtras:
    def __init__(self, sources: SyncSources) -> None:
        self.src = sources

    def typing_since(self, ctx: SyncContext) -> int:
        """The typing position of the client's token: 0 for an initial sync (rooms
        changed since start-up), ``STALE`` for a token of another process."""
        if ctx.since is None:
            return 0
        if not ctx.since.typing:
            return STALE
        return self.src.typing.decode_token(ctx.since.typing)

    async def ephemeral(
        self, ctx: SyncContext, room_ids: Sequence[str]
    ) -> dict[str, list[dict[str, Any]]]:
        """room id -> ephemeral events, for the rooms that have any."""
        flt = ctx.flt.room.ephemeral
        out: dict[str, list[dict[str, Any]]] = {}
        typing = self.src.typing.typing_for_rooms(room_ids, self.typing_since(ctx))
        for room_id, content in typing.items():
            event = {"type": "m.typing", "content": content}
            if event_matches(flt, {**event, "room_id": room_id}):
                out.setdefault(room_id, []).append(event)
        since = ctx.since.receipts if ctx.since is not None else 0
        receipts = await self.src.receipts.receipts_since(
            room_ids, since, ctx.user_id, ctx.now.receipts
        )
        for room_id, content in receipts.items():
            event = {"type": "m.receipt", "content": content}
            if event_matches(flt, {**event, "room_id": room_id}):
                out.setdefault(room_id, []).append(event)
        return out

    async def unread(self, ctx: SyncContext, rooms: Sequence[RoomInfo]) -> dict[str, Any]:
        """room id -> {"unread_notifications": ..., "unread_thread_notifications"?: ...}."""
        by_thread = ctx.flt.room.timeline.unread_thread_notifications
        read = ctx.memberships_read
        known = ctx.initial_counts if read is None else read.counts
        if by_thread:
            known = None
        if known is not None and all(r.room_nid in known for r in rooms):
            # Read exact with the heads (``SyncStore.sync_heads_and_memberships``, or an
            # initial sync's ``sync_heads_and_rooms``): no statement, no wait for the
            # push evaluator.
            return {
                r.room_id: {
                    "unread_notifications": {
                        "notification_count": known[r.room_nid][0],
                        "highlight_count": known[r.room_nid][1],
                    }
                }
                for r in rooms
            }
        counts = await self.src.notifications.unread_counts(
            ctx.user_id, rooms, by_thread, ctx.now.events
        )
        out: dict[str, Any] = {}
        for room_id, c in counts.items():
            body: dict[str, Any] = {
                "unread_notifications": {
                    "notification_count": c.main.notifications,
                    "highlight_count": c.main.highlights,
                }
            }
            if by_thread:
                body["unread_thread_notifications"] = {
                    root: {"notification_count": t.notifications, "highlight_count": t.highlights}
                    for root, t in c.threads.items()
                }
            out[room_id] = body
        return out
