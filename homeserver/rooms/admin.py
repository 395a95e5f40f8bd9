"""Server admins looking at and shutting down rooms (Synapse's room admin API, and the CLI).

A shutdown makes every local member leave (their own leave event, through
the same path as a user leaving), removes the room's local aliases and its
directory entry, and optionally blocks the room so no local user can join,
knock or be invited again. With ``purge`` the room is then deleted from the
database (``HistoryPurger.purge_room``): events, state, memberships and what
derives from them. The outcome is kept in ``room_shutdowns`` for the status
endpoints.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.events.identifiers import is_valid_user_id
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.purge import HistoryPurger
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.admin_store import RoomAdminStore, Shutdown
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.rooms.admin")

_SUMMARY_KEYS = [
    ("m.room.create", ""),
    ("m.room.name", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.join_rules", ""),
    ("m.room.guest_access", ""),
    ("m.room.history_visibility", ""),
    ("m.room.encryption", ""),
    ("m.room.avatar", ""),
    ("m.room.topic", ""),
]

# order_by -> (summary field, largest first when going forwards)
ROOM_ORDERS: dict[str, tuple[str, bool]] = {
    "name": ("name", False),
    "alphabetical": ("name", False),
    "canonical_alias": ("canonical_alias", False),
    "joined_members": ("joined_members", True),
    "size": ("joined_members", True),
    "joined_local_members": ("joined_local_members", True),
    "version": ("version", False),
    "creator": ("creator", False),
    "encryption": ("encryption", False),
    "federatable": ("federatable", False),
    "public": ("public", False),
    "join_rules": ("join_rules", False),
    "guest_access": ("guest_access", False),
    "history_visibility": ("history_visibility", False),
    "state_events": ("state_events", True),
}


@dataclass(frozen=True, slots=True)
class RoomQuery:
    offset: int = 0
    limit: int = 100
    order_by: str = "name"
    backwards: bool = False
    search_term: str | None = None


def check_room_id(room_id: str) -> str:
    """A room id of any version ("!opaque:server" or v12's "!hash"), or 400."""
    if not room_id.startswith("!") or len(room_id) < 2 or len(room_id.encode()) > 255:
        raise invalid_param(f"{room_id!r} is not a legal room ID")
    if any(c in room_id for c in "\x00/ "):
        raise invalid_param(f"{room_id!r} is not a legal room ID")
    return room_id


def _text(content: dict[str, Any], key: str) -> str | None:
    value = content.get(key)
    return value if isinstance(value, str) else None


class RoomAdmin:
    def __init__(
        self,
        rooms: RoomService,
        memberships: MembershipService,
        serializer: EventSerializer,
        store: RoomAdminStore,
        purger: HistoryPurger,
    ) -> None:
        self.rooms = rooms
        self.memberships = memberships
        self.serializer = serializer
        self.store = store
        self.purger = purger

    async def is_blocked(self, room_id: str) -> bool:
        return await self.store.blocked_by(room_id) is not None

    async def _room(self, room_id: str) -> RoomInfo:
        room = await self.rooms.rooms.get_room(check_room_id(room_id))
        if room is None:
            raise not_found("Room not found")
        return room

    # ---------------------------------------------------------------- reading

    async def _summaries(self, nids: Sequence[int]) -> list[dict[str, Any]]:
        """Synapse's room list entries for these rooms, with a few grouped queries."""
        store = self.rooms.rooms
        infos = await store.rooms_by_nid(nids)
        key_nids = await store.key_nids(_SUMMARY_KEYS)
        by_key_nid = {v: k[0] for k, v in key_nids.items()}
        state = await self.rooms.state.current_state_many(nids, key_nids.values())
        events = await self.rooms.events.by_nids(
            e for per_room in state.values() for e in per_room.values()
        )
        joined = await self.rooms.members.joined_counts(nids)
        local = await self.store.local_joined_counts(nids, self.rooms.server_name)
        state_counts = await self.store.state_counts(nids)
        public = await self.store.public_flags(nids)
        out = []
        for nid in nids:
            info = infos.get(nid)
            if info is None:
                continue
            content: dict[str, dict[str, Any]] = {}
            for key_nid, event_nid in state.get(nid, {}).items():
                ev = events.get(event_nid)
                if ev is not None and key_nid in by_key_nid:
                    content[by_key_nid[key_nid]] = ev.event.content
            create = content.get("m.room.create", {})
            out.append(
                {
                    "room_id": info.room_id,
                    "name": _text(content.get("m.room.name", {}), "name"),
                    "canonical_alias": _text(content.get("m.room.canonical_alias", {}), "alias"),
                    "joined_members": joined.get(nid, 0),
                    "joined_local_members": local.get(nid, 0),
                    "version": info.version.identifier,
                    "creator": info.creator,
                    "encryption": _text(content.get("m.room.encryption", {}), "algorithm"),
                    "federatable": create.get("m.federate", True) is not False,
                    "public": public.get(nid, False),
                    "join_rules": _text(content.get("m.room.join_rules", {}), "join_rule"),
                    "guest_access": _text(content.get("m.room.guest_access", {}), "guest_access"),
                    "history_visibility": _text(
                        content.get("m.room.history_visibility", {}), "history_visibility"
                    ),
                    "state_events": state_counts.get(nid, 0),
                    "room_type": _text(create, "type"),
                    "avatar": _text(content.get("m.room.avatar", {}), "url"),
                    "topic": _text(content.get("m.room.topic", {}), "topic"),
                }
            )
        return out

    async def list_rooms(self, q: RoomQuery) -> dict[str, Any]:
        """One page of every room this server knows, ordered and searched like Synapse."""
        entries = await self._summaries(await self.store.all_room_nids())
        if q.search_term:
            term = q.search_term.lower()
            entries = [
                e
                for e in entries
                if any(term in (e.get(k) or "").lower() for k in ("name", "canonical_alias"))
                or term == e["room_id"].lower()
            ]
        field, largest_first = ROOM_ORDERS[q.order_by]
        present = [e for e in entries if e[field] is not None]
        missing = [e for e in entries if e[field] is None]
        present.sort(key=lambda e: (e[field], e["room_id"]), reverse=largest_first != q.backwards)
        ordered = present + missing
        page = [
            {k: v for k, v in e.items() if k not in ("avatar", "topic")}
            for e in ordered[q.offset : q.offset + q.limit]
        ]
        body: dict[str, Any] = {"rooms": page, "offset": q.offset, "total_rooms": len(ordered)}
        if q.offset + len(page) < len(ordered):
            body["next_batch"] = q.offset + len(page)
        if q.offset > 0:
            body["prev_batch"] = max(0, q.offset - q.limit)
        return body

    async def room_details(self, room_id: str) -> dict[str, Any]:
        room = await self._room(room_id)
        (details,) = await self._summaries([room.room_nid])
        members = await self.rooms.members.local_users(room.room_nid, self.rooms.server_name)
        joined_local = [
            m.user_id
            for m in await self.rooms.members.members(room.room_nid, ("join",))
            if m.user_id in members
        ]
        details["joined_local_devices"] = await self.store.local_devices(joined_local)
        details["forgotten"] = False
        details["blocked"] = await self.is_blocked(room.room_id)
        return details

    async def members(self, room_id: str) -> list[str]:
        room = await self._room(room_id)
        return [m.user_id for m in await self.rooms.members.members(room.room_nid, ("join",))]

    async def state(self, room_id: str) -> list[dict[str, Any]]:
        room = await self._room(room_id)
        now = self.rooms.clock.now_ms()
        current = await self.rooms.current_state(room)
        return [self.serializer.one(s, now) for _, s in sorted(current.items())]

    # --------------------------------------------------------------- blocking

    async def block_status(self, room_id: str) -> dict[str, Any]:
        by = await self.store.blocked_by(check_room_id(room_id))
        return {"block": by is not None, **({"user_id": by} if by is not None else {})}

    async def set_block(self, admin: str, room_id: str, block: bool) -> None:
        if block:
            await self.store.block(check_room_id(room_id), admin, self.rooms.clock.now_ms())
        else:
            await self.store.unblock(check_room_id(room_id))

    # --------------------------------------------------------------- shutdown

    async def shutdown(
        self,
        admin: str,
        room_id: str,
        *,
        block: bool,
        reason: str | None = None,
        purge: bool = False,
        force_purge: bool = False,
    ) -> Shutdown:
        """Every local member leaves, local aliases and the directory entry go, and
        with ``block`` the room stays closed to local users; with ``purge`` the room
        is then deleted (refused while a local user could not be made to leave,
        unless ``force_purge``). Returns the recorded outcome."""
        check_room_id(room_id)
        room = await self.rooms.rooms.get_room(room_id)
        if room is None and not block:
            raise not_found("Room not found")
        if not is_valid_user_id(admin):
            raise invalid_param("Invalid admin user id")
        now = self.rooms.clock.now_ms()
        record = Shutdown(secrets.token_urlsafe(12), room_id, "shutting_down", "", {}, now)
        await self.store.save_shutdown(record)
        result: dict[str, Any] = {
            "kicked_users": [],
            "failed_to_kick_users": [],
            "local_aliases": [],
            "new_room_id": None,
        }
        try:
            if block:
                await self.store.block(room_id, admin, now)
            if room is not None:
                await self._empty_room(room, result, reason)
                if purge:
                    if result["failed_to_kick_users"] and not force_purge:
                        raise MatrixError(
                            400, "M_UNKNOWN", "Local users are still in the room; not purged"
                        )
                    record = Shutdown(record.delete_id, room_id, "purging", "", result, now)
                    await self.store.save_shutdown(record)
                    await self.purger.purge_room(room)
        except MatrixError as e:
            record = Shutdown(record.delete_id, room_id, "failed", e.error, result, now)
            await self.store.save_shutdown(record)
            return record
        except Exception:
            # The status endpoint must not say "purging" forever; the details are logged.
            log.exception("shutting down %s failed", room_id)
            record = Shutdown(record.delete_id, room_id, "failed", "internal error", result, now)
            await self.store.save_shutdown(record)
            return record
        record = Shutdown(record.delete_id, room_id, "complete", "", result, now)
        await self.store.save_shutdown(record)
        return record

    async def _empty_room(self, room: RoomInfo, result: dict[str, Any], reason: str | None) -> None:
        await self.rooms.rooms.set_public(room.room_nid, False)
        for alias in await self.rooms.rooms.aliases_for_room(room.room_nid):
            await self.rooms.rooms.delete_alias(alias)
            result["local_aliases"].append(alias)
        # Invited and knocking users first: while a local user is still joined their
        # leave is a local event; afterwards it would be a handshake with another server.
        suffix = ":" + self.rooms.server_name
        local = [
            m.user_id
            for states in (("invite", "knock"), ("join",))
            for m in await self.rooms.members.members(room.room_nid, states)
            if m.user_id.endswith(suffix)
        ]
        for user_id in local:
            try:
                await self.memberships.leave(user_id, room.room_id, reason)
                await self.memberships.forget(user_id, room.room_id)
            except MatrixError:
                result["failed_to_kick_users"].append(user_id)
                continue
            result["kicked_users"].append(user_id)

    async def shutdowns(self, room_id: str) -> list[Shutdown]:
        found = await self.store.shutdowns_of(check_room_id(room_id))
        if not found:
            raise not_found("No shutdown found for this room")
        return found

    async def shutdown_by_id(self, delete_id: str) -> Shutdown:
        found = None if "\x00" in delete_id else await self.store.shutdown(delete_id)
        if found is None:
            raise not_found("No shutdown with this delete_id")
        return found
