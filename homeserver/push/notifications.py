"""Notifications: push rules evaluated once per event and local member, stored, counted.

Design note
-----------
``rows_for`` gives the notification rows of one committed event: for every
local member joined in the state before it (and a local invitee of an
invite) except the sender, that member's push rules
(``evaluator.evaluate``) with the room facts the conditions need, read once
per event: joined member count, the members' display names, the sender's
power level (``rooms/auth/power_levels.py``, the only rule for it: v12
creators outrank every level) and the ``notifications`` levels. Members with
the default outcome (most of them: default rules, not singled out) share ONE
``event_push_shared`` row, which covers every local member joined at the
event (``spans_store.py``); a member whose outcome differs gets an
``event_push_actions`` row of their own (which may notify nobody: it hides
the shared row from them), and so does an invitee whose outcome notifies.
A message in a room of ten thousand thus writes one row, not ten thousand, and
(after the room's last membership change) looks only at the members it mentions and
those with rules of their own (``_evaluate_flat``, ``room_members.py``).
It runs after the send answered, in ``PushEvaluator`` (evaluation.py: stream
order, a durable cursor moved with the rows), so a send costs the same in a room
of ten members as in one of ten thousand; an ordinary message whose evaluation is
flat (``rows_if_flat``) may be evaluated in the send's own transaction instead.
/sync then counts rows (own and shared: ``actions_store.py``) after the user's read receipt
(``unread_counts``, once the cursor has reached the sync's upper bound; an
incremental sync reads them with its heads when that snapshot's cursor is at its
head: ``sync/store.py``) and
``GET /notifications`` pages through them; nothing re-scans room history.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence, Set
from dataclasses import dataclass, replace
from typing import Any

from homeserver.errors import invalid_param
from homeserver.events.model import Event
from homeserver.push.actions_store import (
    MAIN,
    PushActionRow,
    PushActionStore,
    SharedRow,
    ThreadCounts,
)
from homeserver.push.evaluator import Memo, Outcome, PushContext, evaluate
from homeserver.push.room_members import PushRoom, PushRoomCache, build_push_room
from homeserver.push.rules import build_ruleset, ordered
from homeserver.push.service import PushRuleService
from homeserver.rooms.auth.power_levels import notification_level, user_power_level
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey

# Told of an event's rows after they committed (pushers); must not block or fail.
RowHook = Callable[["EventPush", StoredEvent], None]
POWER_LEVELS = ("m.room.power_levels", "")
CREATE = ("m.room.create", "")
MAX_NOTIFICATIONS_LIMIT = 100
# Unread counts of at most this many rooms read receipts and counts in one statement.
ONE_STATEMENT_ROOMS = 16


def thread_of(event: dict[str, Any]) -> str:
    """The thread root an event belongs to, or ``main`` (spec: "Threading")."""
    content = event.get("content")
    rel = content.get("m.relates_to") if isinstance(content, dict) else None
    if isinstance(rel, dict) and rel.get("rel_type") == "m.thread":
        root = rel.get("event_id")
        if isinstance(root, str):
            return root
    return MAIN


# A user id no event can name (not a valid one): the server-default rules evaluated for
# it give the outcome of every member with default rules whom the event does not single
# out (``_Shared``).
_ANYONE = "@\x00anyone:invalid"
_ANYONE_RULES = ordered(build_ruleset(_ANYONE, {}, {}))
_NOTHING = Outcome("", ())
# The characters outside ASCII that ``re.IGNORECASE`` matches to an ASCII one and that
# ``str.casefold`` does not map to it (the others, such as U+212A KELVIN SIGN, it does).
_DOTTED_I = str.maketrans({"\u0130": "i", "\u0131": "i"})


class _Shared:
    """Which members an event singles out under the server-default rules.

    The defaults depend on the user only through their id (``.m.rule.invite_for_me``:
    the ``state_key``; ``.m.rule.is_user_mention``: ``m.mentions.user_ids``) and their
    display name (``.m.rule.contains_display_name``). A member named by neither gets the
    same outcome as anyone else, evaluated once per event. The display name test is a
    conservative substring test of the folded body: it may single out too many (they are
    then evaluated in full), never too few, since the rule's case-insensitive word match
    implies the substring (names outside ASCII are always evaluated in full).
    """

    def __init__(self, event: dict[str, Any]) -> None:
        self.state_key = event.get("state_key")
        content = event.get("content")
        content = content if isinstance(content, dict) else {}
        mentions = content.get("m.mentions")
        ids = mentions.get("user_ids") if isinstance(mentions, dict) else None
        self.mentioned = {u for u in ids if isinstance(u, str)} if isinstance(ids, list) else set()
        body = content.get("body")
        self.folded = body.translate(_DOTTED_I).casefold() if isinstance(body, str) else None

    def singles_out(self, user_id: str, name: str | None) -> bool:
        if user_id == self.state_key or user_id in self.mentioned:
            return True
        if any(c in user_id for c in "*?["):
            return True  # an old-style id that a default rule would read as a glob
        if not name or self.folded is None:
            return False
        return not name.isascii() or name.casefold() in self.folded


def _anyone(ev: Event, state: Mapping[StateKey, StoredEvent], member_count: int) -> PushContext:
    """The context of "anyone" for ``ev``: the room facts its conditions need, from the
    state before it; a member's own context differs in their id and display name."""
    pl_stored = state.get(POWER_LEVELS)
    create_stored = state.get(CREATE)
    pl_event = pl_stored.event if pl_stored is not None else None
    create = create_stored.event if create_stored is not None else None
    if ev.type == "m.room.create":
        create = ev
    # The one rule for power (rooms/auth/power_levels.py): v12 creators are
    # above every level, so their @room always may highlight.
    sender_level = user_power_level(ev.sender, pl_event, create)
    levels = pl_event.content.get("notifications") if pl_event is not None else None
    notification_levels = {
        key: notification_level(pl_event, key)
        for key in (levels if isinstance(levels, dict) else {})
        if isinstance(key, str)
    }
    notification_levels.setdefault("room", notification_level(pl_event, "room"))
    return PushContext(
        user_id=_ANYONE,
        member_count=member_count,
        display_name=None,
        sender_power_level=sender_level,
        notification_levels=notification_levels,
    )


@dataclass(frozen=True, slots=True)
class EventPush:
    """One event's evaluation: the rows it writes, and the local members joined at it,
    whom its shared row covers (None: not known, e.g. an out-of-band invite; the
    members' spans then stay as they are: ``spans_store.py``)."""

    rows: list[PushActionRow]  # members' own rows; some may notify nobody
    shared: SharedRow | None
    joined: frozenset[str] | None

    def notified_among(self, users: Set[str]) -> list[str]:
        """Which of ``users`` the event notifies (``notify``), found without a loop over
        the room: the pushers ask only about the few users that have one."""
        own = {r.user_id for r in self.rows}
        out = [r.user_id for r in self.rows if r.notify and r.user_id in users]
        shared = self.shared
        if shared is not None and shared.notify and self.joined:
            # A set intersection (in C) walks the smaller of the two.
            both = self.joined.intersection(users)
            out.extend(u for u in both if u not in own and u != shared.sender)
        return sorted(out)

    def notified(self) -> list[PushActionRow]:
        """Every member's row that notifies or highlights, one per member (a loop over
        the room: for tests and rare paths, not for every event)."""
        out = [r for r in self.rows if r.notify or r.highlight]
        if self.shared is not None and self.joined:
            own = {r.user_id for r in self.rows}
            own.add(self.shared.sender)
            out.extend(self.shared.for_user(u) for u in sorted(self.joined) if u not in own)
        return out


NOTHING_PUSHED = EventPush([], None, None)


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
        # Called with the rows of each event after they committed (pushers).
        self.row_hooks: list[RowHook] = []
        # Each room's members as evaluation needs them (a follower of the local members
        # cache, which drops it on every membership change: ``room_members.py``).
        self.room_members = PushRoomCache()
        rooms.members.local_cache.followers.append(self.room_members)
        # Waits until every event up to a position has its rows (``PushEvaluator``).
        self.caught_up: Callable[[int], Awaitable[bool]] | None = None
        # Waits until this process's persisted events have their rows, if it evaluates
        # (``PushEvaluator.settle``): when a /sync reads, not whether its counts are exact.
        self.settle: Callable[[], Awaitable[None]] | None = None

    # ------------------------------------------------------------ evaluation

    async def rows_for(self, stored: StoredEvent) -> EventPush:
        """The notification rows of one committed event: one shared row for the local
        members joined in the state before it whose outcome is the default one, and a
        row of their own for the others (and a local invitee of an invite) whose rules
        notify or highlight, or whose outcome differs from the shared one. Run by
        ``PushEvaluator`` after the send answered, in stream order."""
        so = stored.stream_ordering
        if so is None or so <= 0 or stored.redacted_by is not None:
            return NOTHING_PUSHED  # hidden, backfilled, or redacted before it was evaluated
        return self._push(stored, so, *await self._evaluate(stored, so))

    async def rows_if_flat(self, stored: StoredEvent) -> EventPush | None:
        """``rows_for`` of an ordinary message, if its evaluation needs neither a read of
        the room's members nor its lock: a message (no state, no outlier) after the room's
        newest membership change, whose members this process has cached, settled
        (``_room``'s undo already dropped) and with their names. None otherwise.

        For the send's own transaction (``PushEvaluator.evaluate_in``), which holds the
        room's lock (``_room`` would take it on a cache miss) and whose membership rows,
        were it a membership event, the cache would not know yet."""
        so = stored.stream_ordering
        ev = stored.event
        if so is None or so <= 0 or stored.redacted_by is not None or stored.outlier:
            return None
        if ev.is_state() or self.rooms.members.local_cache.publish is not None:
            return None  # with other processes, only a database probe makes the cache exact
        room = self.room_members.peek(stored.room_nid)[0]
        if room is None or room.undo or room.names is None or room.floor > so or room.newest >= so:
            return None
        return self._push(stored, so, *await self._evaluate_flat(stored, room))

    def _push(
        self,
        stored: StoredEvent,
        so: int,
        joined: frozenset[str] | None,
        common: Outcome | None,
        outcomes: list[tuple[str, Outcome]],
    ) -> EventPush:
        """The rows of an evaluated event (``_evaluate``'s answer)."""
        ev = stored.event
        thread = thread_of(ev.pdu)
        shared: SharedRow | None = None
        if common is not None and (common.notify or common.highlight) and joined:
            shared = SharedRow(
                stored.room_nid,
                stored.event_nid,
                so,
                thread,
                ev.sender,
                common.notify,
                common.highlight,
                common.actions,
                ev.origin_server_ts,
            )
        covered = joined if shared is not None and joined is not None else frozenset[str]()
        # Most exceptions share a few outcome objects: their flags, read from the
        # actions, are worked out once per distinct outcome, not once per member.
        flags: dict[int, tuple[bool, bool]] = {}
        rows = []
        for user_id, outcome in outcomes:
            if user_id in covered:
                if outcome is common or (common is not None and outcome.actions == common.actions):
                    continue  # the shared row says it
                # An exception: a row even if it notifies nobody, to hide the shared one.
            flag = flags.get(id(outcome))
            if flag is None:
                flag = flags[id(outcome)] = (outcome.notify, outcome.highlight)
            if user_id not in covered and not (flag[0] or flag[1]):
                continue
            rows.append(
                PushActionRow(
                    user_id,
                    stored.room_nid,
                    stored.event_nid,
                    so,
                    thread,
                    flag[0],
                    flag[1],
                    outcome.actions,
                    ev.origin_server_ts,
                )
            )
        return EventPush(rows, shared, joined)

    async def _evaluate(
        self, stored: StoredEvent, so: int
    ) -> tuple[frozenset[str] | None, Outcome | None, list[tuple[str, Outcome]]]:
        """The local members joined in the state before the event (None for an outlier:
        not known), the outcome of default rules for those the event does not single
        out (None if nobody has it), and every local member's outcome (the sender's
        aside; ``_NOTHING`` where no rule matched), that very object for the former.

        Members are read from ``room_memberships`` (current), and those whose membership
        changed at or after the event are looked up in the state before it, so a user who
        joined after the message is not notified of it however far behind evaluation is.
        An out-of-band invite (an outlier with a position: this server is not in the
        room) only concerns its invitee.
        """
        ev = stored.event
        suffix = ":" + self.rooms.server_name
        rows: list[Membership] = []
        names: dict[str, str | None] | None = None
        invitee = None
        if ev.type == "m.room.member" and ev.membership == "invite" and ev.state_key:
            if ev.state_key.endswith(suffix):
                invitee = ev.state_key
        if not stored.outlier:
            room, fresh = await self._room(stored.room_nid, so, ev.room_id)
            if so > room.newest and room.names is not None and invitee is None:
                return await self._evaluate_flat(stored, room)
            # A membership changed at or after the event (a join, a leave, a rename):
            # every member is looked at, with the state before it for those.
            rows, names = fresh or await self.rooms.members.push_members(stored.room_nid, so)
        stable = {m.user_id for m in rows if m.membership == "join" and m.stream_ordering < so}
        changed = sorted({m.user_id for m in rows if m.stream_ordering >= so})
        if not changed and invitee is None and not any(u.endswith(suffix) for u in stable):
            return (None if stored.outlier else frozenset()), None, []
        # Display names only matter to ``contains_display_name``, which needs a string
        # ``content.body``: without one (joins, reactions, state) the members' events are
        # not read at all, which keeps a join into a big room from loading every member.
        body = ev.content.get("body")
        # A stable member's row holds the member event of the state before this one, and
        # its display name: the events themselves are read only for rooms whose rows may
        # lack names (``push_members``).
        keys = [POWER_LEVELS, CREATE] + [("m.room.member", u) for u in changed]
        if isinstance(body, str) and names is None:
            keys += [("m.room.member", u) for u in sorted(stable) if u.endswith(suffix)]
        state = await self._state_before(stored, keys)
        joined = set(stable)
        for user_id in changed:
            member = state.get(("m.room.member", user_id))
            if member is not None and member.event.membership == "join":
                joined.add(user_id)
        local = None if stored.outlier else frozenset(u for u in joined if u.endswith(suffix))
        users = {u for u in joined if u.endswith(suffix)}
        if invitee is not None:
            users.add(invitee)
        users.discard(ev.sender)
        if not users:
            return local, None, []
        out: list[tuple[str, Outcome]] = []
        memo: Memo = {}
        shared = _Shared(ev.pdu)
        common: Outcome | None = None
        base = _anyone(ev, state, len(joined))
        # Whoever is not in ``customised`` (one read, then kept) uses the defaults: asking
        # ``uses_defaults`` of every member would read the rules of each one not cached,
        # three statements a member (a remote user's join into a room of 5,000: 15,000).
        custom = await self.rules.customised()
        for user_id in sorted(users):
            member = state.get(("m.room.member", user_id))
            if member is None and names is not None and user_id in stable:
                name = names.get(user_id)
            else:
                raw = member.event.content.get("displayname") if member is not None else None
                name = raw if isinstance(raw, str) else None
            if not shared.singles_out(user_id, name) and (
                user_id not in custom or await self.rules.uses_defaults(user_id)
            ):
                if common is None:
                    common = evaluate(_ANYONE_RULES, ev.pdu, base, memo) or _NOTHING
                out.append((user_id, common))
                continue
            ctx = replace(base, user_id=user_id, display_name=name)
            outcome = evaluate(await self.rules.rules_for_user(user_id), ev.pdu, ctx, memo)
            out.append((user_id, outcome or _NOTHING))
        return local, common, out

    async def _evaluate_flat(
        self, stored: StoredEvent, room: PushRoom
    ) -> tuple[frozenset[str], Outcome | None, list[tuple[str, Outcome]]]:
        """``_evaluate`` for an event after the room's newest membership change (most
        messages): the members joined at it are those joined now, and only the members
        that may not share the default outcome are looked at (``room_members.py``), so
        the work does not grow with the room."""
        ev = stored.event
        local = room.local
        if not local or (len(local) == 1 and ev.sender in local):
            return local, None, []
        state = await self._state_before(stored, [POWER_LEVELS, CREATE])
        base = _anyone(ev, state, room.member_count)
        memo: Memo = {}
        common = evaluate(_ANYONE_RULES, ev.pdu, base, memo) or _NOTHING
        shared = _Shared(ev.pdu)
        candidates = set(room.always)
        candidates.update(local.intersection(shared.mentioned))
        if isinstance(shared.state_key, str) and shared.state_key in local:
            candidates.add(shared.state_key)
        candidates.update(local.intersection(await self.rules.customised()))
        candidates.discard(ev.sender)
        names = room.names or {}
        out: list[tuple[str, Outcome]] = []
        for user_id in sorted(candidates):
            name = names.get(user_id)
            if not shared.singles_out(user_id, name) and await self.rules.uses_defaults(user_id):
                continue  # the shared outcome, which the shared row says
            ctx = replace(base, user_id=user_id, display_name=name)
            outcome = evaluate(await self.rules.rules_for_user(user_id), ev.pdu, ctx, memo)
            out.append((user_id, outcome or _NOTHING))
        return local, common, out

    async def _room(
        self, room_nid: int, so: int, room_id: str
    ) -> tuple[PushRoom, tuple[list[Membership], dict[str, str | None] | None] | None]:
        """The room's ``PushRoom``, having seen every membership changed at or after
        ``so``, and the rows it was built from if they were read just now.

        A read that a membership commit raced is not kept (``room_cache``); in a room that
        members keep joining, the next read would be raced again, and every join would
        read every member. So a read holds the room's lock, which local writers hold
        from building an event to reporting its commit: it is kept, and commits bring
        it up to date from then on (``PushRoomCache.advance``)."""
        suffix = ":" + self.rooms.server_name
        members = self.rooms.members
        fresh: list[tuple[list[Membership], dict[str, str | None] | None]] = []

        async def read() -> PushRoom:
            rows, names = await members.push_members(room_nid, so)
            fresh.append((rows, names))
            return build_push_room(rows, names, so, suffix)

        if room_nid in self.room_members:
            room = await self.room_members.get(room_nid, read)
        else:
            async with self.rooms.lock(room_id):
                room = await self.room_members.get(room_nid, read)
        if room.floor > so:  # an event older than the cached read: read for it, not kept
            room = await read()
        elif not fresh and members.local_cache.publish is not None:
            # Other processes write memberships too, and their drops come over the bus,
            # maybe after this event: one indexed probe keeps the answer exact.
            if await members.membership_changed_after(room_nid, room.newest):
                self.room_members.drop([room_nid])
                room = await self.room_members.get(room_nid, read)
        if room.undo:
            if so > room.newest:
                # Evaluation runs in stream order: the changes are evaluated, done with.
                self.room_members.swap(room_nid, room, replace(room, undo=(), base=room.newest))
            else:
                # The members as they were before this event (or, if that is no longer
                # kept, the cached value as is: the event is then evaluated from rows).
                room = room.at(so) or room
        return room, (fresh[-1] if fresh else None)

    async def _state_before(
        self, stored: StoredEvent, keys: list[StateKey]
    ) -> dict[StateKey, StoredEvent]:
        """``keys`` of the state before the event: its stored group is the state after
        it, which for a state event differs in the event's own key (the event it
        replaced, ``prev_state_event_nid``, or nothing)."""
        ev = stored.event
        delta: dict[int, int | None] | None = None
        if ev.is_state() and not stored.outlier:
            own = ev.state_tuple()
            if own in keys:
                nids = await self.rooms.rooms.key_nids([own])
                if own in nids:
                    delta = {nids[own]: stored.prev_state_event_nid}
        return await self.rooms.state_before(stored.state_group, delta, keys)

    # ----------------------------------------------------------------- reads

    async def unread_counts(
        self, user_id: str, rooms: Sequence[RoomInfo], by_thread: bool, upto: int = 0
    ) -> dict[str, UnreadCounts]:
        """Per room: counts of notifications after the user's read receipts, once every
        event up to ``upto`` (a sync's upper bound) has been evaluated.

        Without ``by_thread`` everything after the unthreaded (or ``main``)
        receipt counts in ``main``; with it, each thread counts after the
        newer of the unthreaded receipt and the thread's own receipt.
        """
        if not rooms:
            return {}  # no room to count: neither the evaluator's cursor nor the database
        if self.caught_up is not None:
            await self.caught_up(upto)
        if not by_thread and len(rooms) <= ONE_STATEMENT_ROOMS:
            # Everything after the newer of the unthreaded and main receipts counts in
            # ``main``: receipts and counts in one statement (an incremental sync's few
            # rooms with news). Its per-room subqueries make a big statement for many
            # rooms (an initial sync's 200: slower, and ~40 MiB of compiled statements
            # kept by SQLite's statement cache), so those take the two reads below.
            found = await self.store.counts_after_read_many(
                user_id, [(r.room_nid, r.room_id) for r in rooms]
            )
            return {room.room_id: _main_only(found[room.room_nid]) for room in rooms}
        positions = await self.store.read_positions(user_id, [r.room_id for r in rooms])
        after: dict[int, int] = {}
        for room in rooms:
            pos = positions.get(room.room_id, {})
            unthreaded = pos.get("", 0)
            after[room.room_nid] = unthreaded if by_thread else max(unthreaded, pos.get(MAIN, 0))
        all_counts = await self.store.counts_after_many(user_id, after)
        if not by_thread:
            return {room.room_id: _main_only(all_counts[room.room_nid]) for room in rooms}
        out: dict[str, UnreadCounts] = {}
        for room in rooms:
            pos = positions.get(room.room_id, {})
            unthreaded = pos.get("", 0)
            threads: dict[str, ThreadCounts] = {}
            main = ThreadCounts(0, 0)
            for thread, (c, _) in all_counts.get(room.room_nid, {}).items():
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
        if self.caught_up is not None:
            await self.caught_up(await self.rooms.events.current_position())
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


def _main_only(counts: dict[str, tuple[ThreadCounts, int]]) -> UnreadCounts:
    """A room's counts without threads: every thread's counted in ``main``."""
    return UnreadCounts(
        ThreadCounts(
            sum(c.notifications for c, _ in counts.values()),
            sum(c.highlights for c, _ in counts.values()),
        ),
        {},
    )
