"""Notifications: push rules evaluated once per event and local member, stored, counted.

Design note
-----------
``on_event_persisted`` runs after an event commits and *before* /sync
listeners are woken (RoomService ``pre_notify_hooks``), so a woken sync
already sees the new counts. For every local member joined to the room
(and a local invitee of an invite) except the sender it evaluates that
member's push rules (``evaluator.evaluate``) with the room facts the
conditions need, read once per event: joined member count, the members'
display names, the power levels. Events that notify or highlight get an
``event_push_actions`` row. /sync then counts rows after the user's read
receipt (``unread_counts``) and ``GET /notifications`` pages through them;
nothing re-scans room history.

A crash between the event's commit and this hook loses that event's rows
(the event itself is durable); counts are advisory, so this is accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.errors import invalid_param
from homeserver.push.actions_store import MAIN, PushActionRow, PushActionStore, ThreadCounts
from homeserver.push.evaluator import Memo, PushContext, evaluate
from homeserver.push.service import PushRuleService
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

RowHook = Callable[[Sequence[PushActionRow], StoredEvent, RoomInfo], Awaitable[None]]
POWER_LEVELS = ("m.room.power_levels", "")
MAX_NOTIFICATIONS_LIMIT = 100


def thread_of(event: dict[str, Any]) -> str:
    """The thread root an event belongs to, or ``main`` (spec: "Threading")."""
    content = event.get("content")
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread":
        root = rel.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True, slots=True)
class UnreadCounts:
    main: ThreadCounts
    threads: dict[str, ThreadCounts]


class NotificationService:
    def __init__(
        self,
        rooms: RoomService,
        rules: PushRuleService,
        store: PushActionStore,
        serializer: EventSerializer,
    ) -> None:
        self.rooms = rooms
        self.rules = rules
        self.store = store
        self.serializer = serializer
        # Called with the rows of each event after they are stored (pushers).
        self.row_hooks: list[RowHook] = []

    # ---------------------------------------------------------------- writes

    async def on_event_persisted(self, stored: StoredEvent, room: RoomInfo) -> None:
        if stored.stream_ordering is None or stored.soft_failed:
            return
        ev = stored.event
        suffix = ":" + self.rooms.server_name
        joined = await self.rooms.members.members(room.room_nid, ("join",))
        users = {m.user_id for m in joined if m.user_id.endswith(suffix)}
        if ev.type == "m.room.member" and ev.membership == "invite" and ev.state_key:
            if ev.state_key.endswith(suffix):
                users.add(ev.state_key)
        users.discard(ev.sender)
        if not users:
            return
        # Display names only matter to ``contains_display_name``, which needs a string
        # ``content.body``: without one (joins, reactions, state) the members' events are
        # not read at all, which keeps a join into a big room from loading every member.
        body = ev.content.get("body")
        keys = [POWER_LEVELS]
        if isinstance(body, str):
            keys += [("m.room.member", u) for u in sorted(users)]
        state = await self.rooms.state_at(stored.state_group, keys)
        pl_event = state.get(POWER_LEVELS)
        pl = pl_event.event.content if pl_event is not None else {}
        raw_users = pl.get("users")
        pl_users: dict[str, Any] = raw_users if isinstance(raw_users, dict) else {}
        sender_level = _int(pl_users.get(ev.sender), _int(pl.get("users_default"), 0))
        levels = pl.get("notifications")
        notification_levels = (
            {k: v for k, v in levels.items() if isinstance(v, int)}
            if isinstance(levels, dict)
            else {}
        )
        thread = thread_of(ev.pdu)
        rows: list[PushActionRow] = []
        memo: Memo = {}
        for user_id in sorted(users):
            member = state.get(("m.room.member", user_id))
            name = member.event.content.get("displayname") if member is not None else None
            ctx = PushContext(
                user_id=user_id,
                member_count=len(joined),
                display_name=name if isinstance(name, str) else None,
                sender_power_level=sender_level,
                notification_levels=notification_levels,
            )
            outcome = evaluate(await self.rules.rules_for_user(user_id), ev.pdu, ctx, memo)
            if outcome is None or not (outcome.notify or outcome.highlight):
                continue
            rows.append(
                PushActionRow(
                    user_id,
                    room.room_nid,
                    stored.event_nid,
                    stored.stream_ordering,
                    thread,
                    outcome.notify,
                    outcome.highlight,
                    outcome.actions,
                    ev.origin_server_ts,
                )
            )
        await self.store.add(rows)
        if rows:
            for hook in self.row_hooks:
                await hook(rows, stored, room)

    # ----------------------------------------------------------------- reads

    async def unread_counts(
        self, user_id: str, rooms: Sequence[RoomInfo], by_thread: bool
    ) -> dict[str, UnreadCounts]:
        """Per room: counts of notifications after the user's read receipts.

        Without ``by_thread`` everything after the unthreaded (or ``main``)
        receipt counts in ``main``; with it, each thread counts after the
        newer of the unthreaded receipt and the thread's own receipt.
        """
        positions = await self.store.read_positions(user_id, [r.room_id for r in rooms])
        out: dict[str, UnreadCounts] = {}
        for room in rooms:
            pos = positions.get(room.room_id, {})
            unthreaded = pos.get("", 0)
            if not by_thread:
                read = max(unthreaded, pos.get(MAIN, 0))
                counts = await self.store.counts_after(user_id, room.room_nid, read)
                total = ThreadCounts(
                    sum(c.notifications for c, _ in counts.values()),
                    sum(c.highlights for c, _ in counts.values()),
                )
                out[room.room_id] = UnreadCounts(total, {})
                continue
            threads: dict[str, ThreadCounts] = {}
            main = ThreadCounts(0, 0)
            for thread, (c, _) in (
                await self.store.counts_after(user_id, room.room_nid, unthreaded)
            ).items():
                own = pos.get(thread, 0)
                if own > unthreaded:
                    c = await self.store.counts_in_thread_after(user_id, room.room_nid, thread, own)
                if thread == MAIN:
                    main = c
                elif c.notifications or c.highlights:
                    threads[thread] = c
            out[room.room_id] = UnreadCounts(main, threads)
        return out

    async def notifications(
        self, user_id: str, from_token: str | None, limit: int, only: str | None
    ) -> dict[str, Any]:
        """``GET /notifications``: newest first; ``next_token`` pages further back."""
        before: int | None = None
        if from_token is not None:
            if not from_token.isdigit() or len(from_token) > 19:
                raise invalid_param("Invalid 'from' token")
            before = int(from_token)
        limit = max(1, min(limit, MAX_NOTIFICATIONS_LIMIT))
        rows = await self.store.notifications(user_id, before, limit, only == "highlight")
        events = await self.rooms.events.by_nids([r.event_nid for r in rows])
        infos = await self.rooms.rooms.rooms_by_nid({r.room_nid for r in rows})
        positions = await self.store.read_positions(user_id, [i.room_id for i in infos.values()])
        stored = [events[r.event_nid] for r in rows if r.event_nid in events]
        serialized = {
            s.event.event_id: e
            for s, e in zip(stored, await self.serializer.serialize(stored), strict=True)
        }
        out = []
        for r in rows:
            ev = events.get(r.event_nid)
            info = infos.get(r.room_nid)
            if ev is None or info is None:
                continue
            pos = positions.get(info.room_id, {})
            read_at = max(pos.get("", 0), pos.get(r.thread_id, 0))
            out.append(
                {
                    "actions": list(r.actions),
                    "event": serialized[ev.event.event_id],
                    "read": r.stream_ordering <= read_at,
                    "room_id": info.room_id,
                    "ts": r.ts,
                }
            )
        body: dict[str, Any] = {"notifications": out}
        if len(rows) == limit:
            body["next_token"] = str(rows[-1].stream_ordering)
        return body
