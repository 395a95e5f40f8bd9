"""History visibility (client-server "History visibility"), applied to events served
by /messages, /context, /event and /sync.

For each event the state *after* it decides (a user always sees their own
membership events, and an m.room.history_visibility event is also shown
when the setting it replaced allows): ``world_readable`` shows it to anyone; a user
joined at the event sees it; ``shared`` shows it to users who joined the
room at any point after the event (spec rule 3: so a member who has since
left still reads the shared history before their leave); ``invited`` also
to users invited at the event. The two state keys needed are read per
distinct state group in the page, never the full state.

A redaction whose target this server has not seen is held back too (rooms/v3+
"Handling redactions": servers should not send redactions to clients until
both events have been seen). When the target arrives it is stored already
redacted, so clients get its redacted form instead of a dangling redaction.

With message retention on, non-state events older than the room's lifetime
are dropped here as well, so clients stop seeing them before the purge job
deletes them (state events stay: a client's view of the state relies on them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence

from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo

HISTORY_VISIBILITY = "m.room.history_visibility"
REDACTION = "m.room.redaction"
# How far back through a user's membership changes to look for their latest join.
_MAX_MEMBERSHIP_HOPS = 8


def may_see(
    event_type: str,
    state_key: str | None,
    user_id: str,
    visibility: str,
    membership_at: str | None,
    joined_later: bool,
) -> bool:
    """Spec "History visibility", server behaviour rules 1-5; ``joined_later``: the user
    joined the room at some point after the event."""
    if event_type == "m.room.member" and state_key == user_id:
        return True
    if visibility == "world_readable" or membership_at == "join":
        return True
    if visibility == "shared" and joined_later:
        return True
    return visibility == "invited" and membership_at == "invite"


class Visibility:
    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms
        # Message retention: the origin_server_ts before which a room's events have
        # expired (None: nothing has). Set by the composition when retention is on.
        self.expired_before: Callable[[RoomInfo], Awaitable[int | None]] | None = None

    async def filter(
        self, user_id: str, room: RoomInfo, events: Sequence[StoredEvent]
    ) -> list[StoredEvent]:
        return (await self.filter_rooms(user_id, [(room, events)]))[0]

    async def filter_rooms(
        self,
        user_id: str,
        pages: Sequence[tuple[RoomInfo, Sequence[StoredEvent]]],
        current: Mapping[int, Membership | None] | None = None,
    ) -> list[list[StoredEvent]]:
        """``filter`` for pages of several rooms: the two state keys of every state group
        in every page are read at once (a /sync of many rooms must not cost a state
        lookup per group). ``current``: the user's membership per room, when known."""
        pages = await self._without_unseen_targets(pages)
        if self.expired_before is not None:
            pages = [(room, await self._unexpired(room, events)) for room, events in pages]
        keys = [(HISTORY_VISIBILITY, ""), ("m.room.member", user_id)]
        groups = {s.state_group for _, events in pages for s in events}
        states = await self.rooms.state_at_many(groups, keys) if groups else {}
        at: dict[int | None, tuple[str, str | None]] = {}
        for group in groups:
            state = states.get(group, {}) if group is not None else {}
            hv = state.get(keys[0])
            member = state.get(keys[1])
            vis = hv.event.content.get("history_visibility") if hv is not None else None
            at[group] = (
                vis if isinstance(vis, str) else "shared",
                member.event.membership if member is not None else None,
            )
        results: list[list[StoredEvent]] = []
        for room, events in pages:
            if not events:
                results.append([])
                continue
            if current is not None and room.room_nid in current:
                last_join = await self._last_join(room, user_id, current[room.room_nid])
            else:
                last_join = await self._last_join(
                    room, user_id, await self.rooms.members.get(room.room_nid, user_id)
                )
            out = []
            for s in events:
                vis, membership = at[s.state_group]
                so = s.stream_ordering
                later = last_join is not None and (so is None or last_join > so)
                ev = s.event
                if may_see(ev.type, ev.state_key, user_id, vis, membership, later) or (
                    ev.type == HISTORY_VISIBILITY
                    and ev.state_key == ""
                    and may_see(
                        ev.type, ev.state_key, user_id, await self._before(s), membership, later
                    )
                ):
                    out.append(s)
            results.append(out)
        return results

    async def _unexpired(
        self, room: RoomInfo, events: Sequence[StoredEvent]
    ) -> Sequence[StoredEvent]:
        """Message retention: ``events`` less the non-state events that expired."""
        assert self.expired_before is not None
        if not events:
            return events
        cutoff = await self.expired_before(room)
        if cutoff is None:
            return events
        return [s for s in events if s.event.is_state() or s.event.origin_server_ts >= cutoff]

    async def _without_unseen_targets(
        self, pages: Sequence[tuple[RoomInfo, Sequence[StoredEvent]]]
    ) -> list[tuple[RoomInfo, Sequence[StoredEvent]]]:
        """Each page less the redactions whose target is not (yet) stored in its room
        (one look-up for all the pages)."""
        targets = {
            s.event.redacts for _, events in pages for s in events if s.event.type == REDACTION
        }
        targets.discard(None)
        if not targets:
            return list(pages)
        found = await self.rooms.events.by_ids(t for t in targets if t is not None)
        seen = {(s.room_nid, t) for t, s in found.items()}
        return [
            (
                room,
                [
                    s
                    for s in events
                    if s.event.type != REDACTION or (room.room_nid, s.event.redacts) in seen
                ],
            )
            for room, events in pages
        ]

    async def _before(self, hv: StoredEvent) -> str:
        """The visibility an m.room.history_visibility event replaced: such an event is
        visible if the setting before *or* after it allows (spec, server behaviour)."""
        nid = hv.prev_state_event_nid
        if nid is None:
            return "shared"
        found = (await self.rooms.events.by_nids([nid])).get(nid)
        vis = found.event.content.get("history_visibility") if found is not None else None
        return vis if isinstance(vis, str) else "shared"

    async def _last_join(
        self, room: RoomInfo, user_id: str, current: Membership | None
    ) -> int | None:
        """Stream position of the user's latest join to the room, found by walking back
        from their current membership event through the events it replaced."""
        if current is not None and current.membership == "join":
            return current.stream_ordering
        nid = None if current is None else current.event_nid
        for _ in range(_MAX_MEMBERSHIP_HOPS):
            if nid is None:
                return None
            found = (await self.rooms.events.by_nids([nid])).get(nid)
            if found is None:
                return None
            if found.event.membership == "join":
                return found.stream_ordering
            nid = found.prev_state_event_nid
        return None

    async def world_readable(self, room: RoomInfo) -> bool:
        hv = await self.rooms.current_state_event(room, HISTORY_VISIBILITY)
        return hv is not None and hv.event.content.get("history_visibility") == "world_readable"
