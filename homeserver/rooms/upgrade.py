"""Room upgrades (client-server "Room Upgrades", POST /rooms/{roomId}/upgrade).

The server-behaviour steps of the spec, in order: check the power to send
``m.room.tombstone``; create the successor with ``predecessor`` (and the old
room's ``type``); replicate the transferable state; move local aliases (and
the directory listing), the successor's part in one transaction; send the
tombstone; restrict the old room's power levels so that nobody keeps talking
there. Every event goes through the normal checks. Up to v11 the new room's
``predecessor`` names the tombstone event: the tombstone is built and checked
first, the new room is set up while the old room's writer holds it, then it is
sent (v12+ room ids are the create event's hash, so there the tombstone comes
after).

Encryption: ``m.room.encryption`` is transferred, so an encrypted room
upgrades to an encrypted room. Encryption can never be turned off in a room
(see ``prechecks.no_encryption_downgrade``); the way out is an upgrade whose
successor is created without it, which a caller asks for with the
Myelin-specific body field ``net.myelin.without_encryption: true`` (the spec
leaves the transferred state to the implementation).
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError, forbidden, invalid_param
from homeserver.events.identifiers import is_valid_user_id
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.auth import user_power_level
from homeserver.rooms.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.rooms.auth.power_levels import required_power_level
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.service import RoomService, not_in_room
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo, StateKey
from homeserver.storage.database import Queries

TOMBSTONE = "m.room.tombstone"
CANONICAL_ALIAS = "m.room.canonical_alias"
ENCRYPTION = "m.room.encryption"
GUEST_ACCESS = "m.room.guest_access"
# Sent in this order after the power levels; canonical alias after the aliases moved.
TRANSFERRED = [
    "m.room.join_rules",
    "m.room.history_visibility",
    GUEST_ACCESS,
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    ENCRYPTION,
    "m.room.server_acl",
    "m.room.pinned_events",
]


def _levels(content: dict[str, Any]) -> list[int]:
    """Every level mentioned in a power levels content."""
    out = [v for v in content.values() if isinstance(v, int)]
    for table in ("events", "users", "notifications"):
        sub = content.get(table)
        if isinstance(sub, dict):
            out += [v for v in sub.values() if isinstance(v, int)]
    return out


def successor_power_levels(
    old: dict[str, Any], upgrader: str, rv: RoomVersion, creators: list[str]
) -> dict[str, Any]:
    """The old power levels, with the upgrader able to send everything the
    room needs (v12+: creators are implicit and must not be listed)."""
    content = dict(old)
    users = dict(content.get("users") or {}) if isinstance(content.get("users"), dict) else {}
    if rv.privileged_creators:
        for u in creators:
            users.pop(u, None)
    else:
        users[upgrader] = max([100, *_levels(old)])
    content["users"] = users
    return content


def restricted_power_levels(old: dict[str, Any]) -> dict[str, Any]:
    """Old room after the upgrade: events_default and invite at the greater
    of 50 and users_default + 1 (spec step 6)."""
    content = dict(old)
    users_default = content.get("users_default", 0)
    level = max(50, (users_default if isinstance(users_default, int) else 0) + 1)
    content["events_default"] = level
    content["invite"] = level
    return content


class RoomUpgrader:
    def __init__(self, rooms: RoomService, memberships: MembershipService) -> None:
        self.rooms = rooms
        self.memberships = memberships

    async def _check_power(self, user_id: str, room: RoomInfo) -> dict[StateKey, StoredEvent]:
        member = await self.rooms.members.get(room.room_nid, user_id)
        if member is None or member.membership != "join":
            raise not_in_room()
        state = await self.rooms.current_state(room)
        pl = state.get(POWER_LEVELS_KEY)
        create = state.get(CREATE_KEY)
        pl_ev = None if pl is None else pl.event
        level = user_power_level(user_id, pl_ev, None if create is None else create.event)
        if level < required_power_level(TOMBSTONE, True, pl_ev):
            raise forbidden("You do not have the power to upgrade this room")
        return state

    async def upgrade(
        self,
        user_id: str,
        room_id: str,
        new_version: str,
        additional_creators: list[str],
        without_encryption: bool = False,
    ) -> str:
        rv = KNOWN_ROOM_VERSIONS.get(new_version)
        if rv is None:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {new_version} is not supported"
            )
        if any(not is_valid_user_id(u) for u in additional_creators):
            raise invalid_param("additional_creators must be user ids")
        old = await self.rooms.rooms.get_room(room_id)
        if old is None:
            raise MatrixError(404, "M_NOT_FOUND", "Unknown room")
        state = await self._check_power(user_id, old)
        tombstone = {"body": "This room has been replaced"}
        if rv.room_id_from_create_event:
            # The new room's id is its create event's hash, so the tombstone can only
            # follow it; predecessor.event_id names the last known event instead (from
            # v12 it may be left out: spec "Room Upgrades").
            last = max(state.values(), key=lambda s: s.stream_ordering or 0)
            new = await self._build_successor(
                user_id,
                old,
                state,
                rv,
                additional_creators,
                without_encryption,
                None,
                last.event.event_id,
            )
            await self.rooms.create_and_send(
                old, user_id, TOMBSTONE, {**tombstone, "replacement_room": new.room_id}, ""
            )
        else:
            # The new room's create event names the tombstone as its predecessor event
            # (what Synapse and Sytest expect): the tombstone is built first, the new
            # room set up while the old room's writer waits, then the tombstone sent.
            new_room_id = self.rooms.new_room_id()
            made: list[RoomInfo] = []

            async def set_up(event: Event) -> None:
                made.append(
                    await self._build_successor(
                        user_id,
                        old,
                        state,
                        rv,
                        additional_creators,
                        without_encryption,
                        new_room_id,
                        event.event_id,
                    )
                )

            await self.rooms.create_and_send(
                old,
                user_id,
                TOMBSTONE,
                {**tombstone, "replacement_room": new_room_id},
                "",
                before_persist=set_up,
            )
            new = made[0]
        old_pl = state.get(POWER_LEVELS_KEY)
        old_levels = dict(old_pl.event.content) if old_pl is not None else {}
        had_alias = state.get((CANONICAL_ALIAS, "")) is not None
        await self._wind_down(user_id, old, old_levels, had_alias)
        return new.room_id

    async def _build_successor(
        self,
        user_id: str,
        old: RoomInfo,
        state: dict[StateKey, StoredEvent],
        rv: RoomVersion,
        additional_creators: list[str],
        without_encryption: bool,
        room_id: str | None,
        predecessor_event_id: str,
    ) -> RoomInfo:
        """The new room with the old one's transferable state, aliases and directory
        listing (spec "Room Upgrades", steps 2-4): its create event and every event the
        upgrade sends into it, with the aliases and the listing moved, are ONE
        transaction (``RoomService.create_room_chain``), as createRoom's are."""
        create_content = self._create_content(user_id, old, state, rv, additional_creators)
        create_content["predecessor"]["event_id"] = predecessor_event_id
        create = await self.rooms.build_create_event(rv, user_id, create_content, room_id)
        initial: list[tuple[str, dict[str, Any], str | None]] = []

        def send(etype: str, content: dict[str, Any], state_key: str = "") -> None:
            initial.append((etype, content, state_key))

        send("m.room.member", await self.memberships.member_content(user_id, "join"), user_id)
        old_pl = state.get(POWER_LEVELS_KEY)
        old_levels = dict(old_pl.event.content) if old_pl is not None else {}
        creators = [user_id, *create_content.get("additional_creators", [])]
        send("m.room.power_levels", successor_power_levels(old_levels, user_id, rv, creators))
        for etype in TRANSFERRED:
            found = state.get((etype, ""))
            if etype == GUEST_ACCESS and found is None:
                # No event means "forbidden" (spec m.room.guest_access); the new room
                # states it, as Synapse's does, so clients see the setting carried over.
                send(etype, {"guest_access": "forbidden"})
                continue
            if found is None or (etype == ENCRYPTION and without_encryption):
                continue
            send(etype, dict(found.event.content))
        for (etype, key), banned in state.items():
            # Bans carry over, so that the upgrade is no way back in (as Synapse does).
            if etype == "m.room.member" and banned.event.membership == "ban":
                content = {"membership": "ban"}
                reason = banned.event.content.get("reason")
                if isinstance(reason, str):
                    content["reason"] = reason
                send(etype, content, key)
        canonical = state.get((CANONICAL_ALIAS, ""))
        if canonical is not None and canonical.event.content:
            send(CANONICAL_ALIAS, dict(canonical.event.content))
        public = await self.rooms.rooms.is_public(old.room_nid)

        async def also(q: Queries, room_nid: int) -> None:
            await self.rooms.rooms.move_aliases_in(q, old.room_nid, room_nid)
            if public:
                await self.rooms.rooms.set_public_in(q, room_nid, True)
                await self.rooms.rooms.set_public_in(q, old.room_nid, False)

        new, _ = await self.rooms.create_room_chain(create, user_id, initial, also)
        return new

    def _create_content(
        self,
        user_id: str,
        old: RoomInfo,
        state: dict[StateKey, StoredEvent],
        rv: RoomVersion,
        additional_creators: list[str],
    ) -> dict[str, Any]:
        old_create = state.get(CREATE_KEY)
        last = max(state.values(), key=lambda s: s.stream_ordering or 0)
        content: dict[str, Any] = {
            "room_version": rv.identifier,
            "predecessor": {"room_id": old.room_id, "event_id": last.event.event_id},
        }
        if old_create is not None:
            # The room type, and whether it federates, stay what they were.
            for key in ("type", "m.federate"):
                if key in old_create.event.content:
                    content[key] = old_create.event.content[key]
        if not rv.implicit_room_creator:
            content["creator"] = user_id
        if rv.privileged_creators and additional_creators:
            content["additional_creators"] = [u for u in additional_creators if u != user_id]
        return content

    async def _wind_down(
        self, user_id: str, old: RoomInfo, levels: dict[str, Any], had_alias: bool
    ) -> None:
        """Best effort: the old room stops being a place to talk (spec step 6)."""
        try:
            if had_alias:
                await self.rooms.create_and_send(old, user_id, CANONICAL_ALIAS, {}, "")
            if levels:
                await self.rooms.create_and_send(
                    old, user_id, "m.room.power_levels", restricted_power_levels(levels), ""
                )
        except MatrixError:
            pass  # the upgrader may lack the power; the tombstone is what counts
