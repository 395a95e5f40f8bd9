"""History visibility (client-server "History visibility"), applied to events served
by /messages, /context, /event and /sync.

For each event the state *after* it decides (so a user always sees their
own membership events): ``world_readable`` shows it to anyone; a user
joined at the event sees it; ``shared`` shows it to users joined now;
``invited`` also to users invited at the event. The two state keys needed
are read per distinct state group in the page, never the full state.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

HISTORY_VISIBILITY = "m.room.history_visibility"


def may_see(
    event_type: str,
    state_key: str | None,
    user_id: str,
    visibility: str,
    membership_at: str | None,
    currently_joined: bool,
) -> bool:
    if event_type == "m.room.member" and state_key == user_id:
        return True
    if visibility == "world_readable" or membership_at == "join":
        return True
    if visibility == "shared" and currently_joined:
        return True
    return visibility == "invited" and membership_at == "invite"


class Visibility:
    def __init__(self, rooms: RoomService) -> None:
        self.rooms = rooms

    async def filter(
        self, user_id: str, room: RoomInfo, events: Sequence[StoredEvent]
    ) -> list[StoredEvent]:
        if not events:
            return []
        current = await self.rooms.members.get(room.room_nid, user_id)
        joined_now = current is not None and current.membership == "join"
        keys = [(HISTORY_VISIBILITY, ""), ("m.room.member", user_id)]
        at: dict[int | None, tuple[str, str | None]] = {}
        for group in {s.state_group for s in events}:
            state = await self.rooms.state_at(group, keys)
            hv = state.get(keys[0])
            member = state.get(keys[1])
            vis = hv.event.content.get("history_visibility") if hv is not None else None
            at[group] = (
                vis if isinstance(vis, str) else "shared",
                member.event.membership if member is not None else None,
            )
        out = []
        for s in events:
            vis, membership = at[s.state_group]
            if may_see(s.event.type, s.event.state_key, user_id, vis, membership, joined_now):
                out.append(s)
        return out

    async def world_readable(self, room: RoomInfo) -> bool:
        hv = await self.rooms.current_state_event(room, HISTORY_VISIBILITY)
        return hv is not None and hv.event.content.get("history_visibility") == "world_readable"
