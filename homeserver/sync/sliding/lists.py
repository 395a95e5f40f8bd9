"""Sliding sync room lists: which rooms a user has, filtered and sorted by recency.

The candidates are the rooms the user is joined to, invited to or knocking
on, plus (for an incremental request) rooms left or banned from since the
position, so the client learns of the leave. Facts the filters and the sort
need (bump stamp, encryption, room type) are read for all candidates at once
(``SlidingStore``); a list is then a pure filter, sort and slice over them.
Rooms sort newest ``bump_stamp`` first (the stream position of the room's
newest message-like event; for a room the user is not joined to, the
position of their membership), ties by room id.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.errors import MatrixError
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.sync.sliding.request import ListConfig, ListFilters
from homeserver.sync.sliding.store import SlidingStore
from homeserver.userdata.account_data import AccountDataService

CREATE = ("m.room.create", "")
ENCRYPTION = ("m.room.encryption", "")
CURRENT = ("join", "invite", "knock")
IGNORED_USERS = "m.ignored_user_list"


@dataclass(frozen=True)
class Candidate:
    info: RoomInfo
    membership: Membership
    bump_stamp: int
    is_encrypted: bool
    room_type: str | None
    is_dm: bool


def _passes(c: Candidate, f: ListFilters, space_children: set[str] | None) -> bool:
    if f.is_dm is not None and c.is_dm != f.is_dm:
        return False
    if f.is_encrypted is not None and c.is_encrypted != f.is_encrypted:
        return False
    if f.is_invite is not None and (c.membership.membership == "invite") != f.is_invite:
        return False
    if f.room_types is not None and c.room_type not in f.room_types:
        return False
    if c.room_type in f.not_room_types:
        return False
    return space_children is None or c.info.room_id in space_children


def sort_rooms(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Newest bump stamp first; room id breaks ties so the order is stable."""
    return sorted(candidates, key=lambda c: (-c.bump_stamp, c.info.room_id))


def in_ranges(ordered: Sequence[Candidate], ranges: Sequence[tuple[int, int]]) -> list[str]:
    """Room ids at the (inclusive) positions of ``ranges``, in list order, no repeats."""
    out: dict[str, None] = {}
    for start, end in ranges:
        for c in ordered[start : end + 1]:
            out.setdefault(c.info.room_id)
    return list(out)


class RoomLists:
    def __init__(
        self, rooms: RoomService, store: SlidingStore, account_data: AccountDataService
    ) -> None:
        self.rooms = rooms
        self.store = store
        self.account_data = account_data

    async def _dm_rooms(self, user_nid: int, user_id: str) -> set[str]:
        """Room ids named in the user's ``m.direct`` account data."""
        try:
            content = await self.account_data.get(user_nid, user_id, None, "m.direct")
        except MatrixError:
            return set()
        out: set[str] = set()
        for rooms in content.values():
            if isinstance(rooms, list):
                out.update(r for r in rooms if isinstance(r, str))
        return out

    async def _ignored(self, user_nid: int, user_id: str) -> set[str]:
        """The user's ``m.ignored_user_list``: invites from them are not listed (spec
        "Ignoring Users": the server should not show invites from ignored users)."""
        try:
            content = await self.account_data.get(user_nid, user_id, None, IGNORED_USERS)
        except MatrixError:
            return set()
        ignored = content.get("ignored_users")
        if not isinstance(ignored, dict):
            return set()
        return {u for u in ignored if isinstance(u, str) and u != user_id}

    async def candidates(
        self, user_nid: int, user_id: str, since: int | None, now: int
    ) -> dict[str, Candidate]:
        members = self.rooms.members
        current = [
            m for m in await members.rooms_for_user(user_id, CURRENT) if m.stream_ordering <= now
        ]
        if since is not None:
            current += [
                m
                for m in await members.changed_since(user_id, since, now)
                if m.membership in ("leave", "ban")
            ]
        nids = [m.room_nid for m in current]
        infos = await self.rooms.rooms.rooms_by_nid(nids)
        joined = [m.room_nid for m in current if m.membership == "join"]
        bumps = await self.store.bump_stamps(joined, now)
        facts = await self.store.state_contents(nids, [CREATE, ENCRYPTION])
        dms = await self._dm_rooms(user_nid, user_id)
        invites = await self.rooms.events.by_nids(
            [m.event_nid for m in current if m.membership == "invite"]
        )
        ignored = await self._ignored(user_nid, user_id) if invites else set()
        out: dict[str, Candidate] = {}
        for m in current:
            info = infos.get(m.room_nid)
            if info is None:
                continue
            f = facts.get(m.room_nid, {})
            room_type = f.get(CREATE, {}).get("type")
            invite = invites.get(m.event_nid)
            if invite is not None and invite.event.sender in ignored:
                continue
            direct = invite is not None and invite.event.content.get("is_direct") is True
            out[info.room_id] = Candidate(
                info=info,
                membership=m,
                bump_stamp=bumps.get(m.room_nid, m.stream_ordering),
                is_encrypted=ENCRYPTION in f,
                room_type=room_type if isinstance(room_type, str) else None,
                is_dm=info.room_id in dms or direct,
            )
        return out

    async def _space_children(
        self, spaces: Sequence[str], candidates: dict[str, Candidate]
    ) -> set[str]:
        """Children of the listed spaces the user is joined to."""
        nids = [
            candidates[s].info.room_nid
            for s in spaces
            if s in candidates and candidates[s].membership.membership == "join"
        ]
        return await self.store.space_children(nids)

    async def window(
        self, cfg: ListConfig, candidates: dict[str, Candidate]
    ) -> tuple[int, list[str]]:
        """(how many rooms match the list's filters, the room ids in its ranges)."""
        children = None
        if cfg.filters.spaces is not None:
            children = await self._space_children(cfg.filters.spaces, candidates)
        matching = [c for c in candidates.values() if _passes(c, cfg.filters, children)]
        ordered = sort_rooms(matching)
        return len(ordered), in_ranges(ordered, cfg.ranges)
