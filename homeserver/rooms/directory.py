"""The local room directory (client-server "Listing rooms"):
GET/PUT /directory/list/room/{roomId} and GET/POST /publicRooms (also served to other
servers; another server's directory is asked through ``remote_public_rooms``).

Published rooms are the ``rooms.is_public`` flag. A page of /publicRooms
reads the current state of all listed rooms with one query (not one per
room), then sorts by joined members (largest first) and room id, which is
stable, so ``next_batch``/``prev_batch`` are offsets into that order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.rooms.auth import user_power_level
from homeserver.rooms.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.rooms.auth.power_levels import required_power_level
from homeserver.rooms.service import RoomService, not_in_room
from homeserver.rooms.store.rooms_store import StateKey

_KEYS: list[StateKey] = [
    ("m.room.name", ""),
    ("m.room.topic", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.avatar", ""),
    ("m.room.join_rules", ""),
    ("m.room.guest_access", ""),
    ("m.room.history_visibility", ""),
    ("m.room.create", ""),
]


@dataclass(frozen=True)
class PublicRoomsQuery:
    limit: int | None = None
    since: str | None = None
    server: str | None = None
    search_term: str | None = None
    room_types: list[str | None] | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


# (server name, query) -> that server's answer, in the client API's shape.
RemotePublicRooms = Callable[[str, PublicRoomsQuery], Awaitable[dict[str, Any]]]


def _offset(token: str | None) -> int:
    if token is None:
        return 0
    if not token.startswith("o") or not token[1:].isdigit() or len(token) > 12:
        raise invalid_param("Invalid 'since' token")
    return int(token[1:])


def _str(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) else None


class RoomDirectory:
    def __init__(self, rooms: RoomService, allow_publishing: bool) -> None:
        self.rooms = rooms
        self.allow_publishing = allow_publishing
        # Another server's directory (``server`` in the query); None without federation.
        # Bound late by federation (attach_directory), which is built after the rooms.
        self.remote_public_rooms: RemotePublicRooms | None = None

    async def visibility(self, room_id: str) -> str:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        return "public" if await self.rooms.rooms.is_public(room.room_nid) else "private"

    async def set_visibility(self, requester: Requester, room_id: str, visibility: str) -> None:
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        if not requester.is_admin:
            if visibility == "public" and not self.allow_publishing:
                raise forbidden("Publishing rooms is disabled on this server")
            member = await self.rooms.members.get(room.room_nid, requester.user_id)
            if member is None or member.membership != "join":
                raise not_in_room()
            state = await self.rooms.current_state(room, [POWER_LEVELS_KEY, CREATE_KEY])
            pl, create = state.get(POWER_LEVELS_KEY), state.get(CREATE_KEY)
            pl_ev = None if pl is None else pl.event
            level = user_power_level(
                requester.user_id, pl_ev, None if create is None else create.event
            )
            if level < required_power_level("m.room.canonical_alias", True, pl_ev):
                raise forbidden("You lack the power to change this room's directory listing")
        await self.rooms.rooms.set_public(room.room_nid, visibility == "public")

    async def set_network_visibility(
        self, appservice_id: str, network_id: str, room_id: str, visibility: str
    ) -> None:
        """An application service lists a room in its own network's directory (spec AS
        API "Room directories"); the caller checked it is that service."""
        if visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        await self.rooms.rooms.set_network_listing(
            appservice_id, network_id, room.room_nid, visibility == "public"
        )

    async def public_rooms(self, query: PublicRoomsQuery) -> dict[str, Any]:
        if query.server is not None and query.server != self.rooms.server_name:
            if self.remote_public_rooms is None:
                raise MatrixError(
                    404, "M_NOT_FOUND", "Room directories of other servers cannot be queried"
                )
            return await self.remote_public_rooms(query.server, query)
        entries = await self._entries(query)
        term = (query.search_term or "").strip().lower()
        if term:
            entries = [e for e in entries if _matches(e, term)]
        if query.room_types is not None:
            entries = [e for e in entries if e.get("room_type") in query.room_types]
        entries.sort(key=lambda e: (-e["num_joined_members"], e["room_id"]))
        start = _offset(query.since)
        end = len(entries) if query.limit is None else start + query.limit
        out: dict[str, Any] = {
            "chunk": entries[start:end],
            "total_room_count_estimate": len(entries),
        }
        if end < len(entries):
            out["next_batch"] = f"o{end}"
        if start > 0:
            out["prev_batch"] = f"o{max(0, start - (query.limit or start))}"
        return out

    async def _entries(self, query: PublicRoomsQuery) -> list[dict[str, Any]]:
        """The local directory; a third-party network's rooms (``third_party_instance_id``
        "{appservice id}|{network id}"); or both with ``include_all_networks``."""
        store = self.rooms.rooms
        instance = query.third_party_instance_id
        if instance is not None:
            as_id, sep, network_id = instance.partition("|")
            nids = await store.network_rooms(as_id, network_id) if sep else []
        elif query.include_all_networks:
            nids = sorted({*await store.public_rooms(), *await store.network_rooms(None, None)})
        else:
            nids = await store.public_rooms()
        return list((await self.summaries(nids)).values())

    async def summaries(self, nids: list[int]) -> dict[int, dict[str, Any]]:
        """room nid -> its published-room summary (also the space hierarchy's), read for
        all rooms with one state query."""
        infos = await self.rooms.rooms.rooms_by_nid(nids)
        key_nids = await self.rooms.rooms.key_nids(_KEYS)
        by_key_nid = {v: k for k, v in key_nids.items()}
        state = await self.rooms.state.current_state_many(nids, key_nids.values())
        events = await self.rooms.events.by_nids(
            e for per_room in state.values() for e in per_room.values()
        )
        counts = await self.rooms.members.joined_counts(nids)
        out: dict[int, dict[str, Any]] = {}
        for nid in nids:
            info = infos.get(nid)
            if info is None:
                continue
            content: dict[str, dict[str, Any]] = {}
            for key_nid, event_nid in state.get(nid, {}).items():
                ev = events.get(event_nid)
                if ev is not None and key_nid in by_key_nid:
                    content[by_key_nid[key_nid][0]] = ev.event.content
            entry: dict[str, Any] = {
                "room_id": info.room_id,
                "num_joined_members": counts.get(nid, 0),
                "world_readable": _str(
                    content.get("m.room.history_visibility", {}), "history_visibility"
                )
                == "world_readable",
                "guest_can_join": _str(content.get("m.room.guest_access", {}), "guest_access")
                == "can_join",
                "join_rule": _str(content.get("m.room.join_rules", {}), "join_rule") or "public",
            }
            for field, etype, key in (
                ("name", "m.room.name", "name"),
                ("topic", "m.room.topic", "topic"),
                ("canonical_alias", "m.room.canonical_alias", "alias"),
                ("avatar_url", "m.room.avatar", "url"),
                ("room_type", "m.room.create", "type"),
            ):
                value = _str(content.get(etype, {}), key)
                if value:
                    entry[field] = value
            out[nid] = entry
        return out


def _matches(entry: dict[str, Any], term: str) -> bool:
    return any(
        term in str(entry.get(k, "")).lower()
        for k in ("name", "topic", "canonical_alias", "room_id")
    )
