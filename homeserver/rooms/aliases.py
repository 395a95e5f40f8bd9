"""Local room aliases: create, resolve, delete, list (client-server "Room aliases")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.accounts.requester import Requester
from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_room_alias
from homeserver.rooms.auth import user_power_level
from homeserver.rooms.auth.constants import CREATE_KEY, POWER_LEVELS_KEY
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.service import RoomService, not_in_room

# Resolves another server's alias over federation: (room id, servers).
RemoteAliasLookup = Callable[[str], Awaitable[tuple[str, list[str]]]]


class AliasService:
    def __init__(self, rooms: RoomService, reader: RoomReader) -> None:
        self.rooms = rooms
        self.reader = reader
        self.remote_lookup: RemoteAliasLookup | None = None  # set when federating
        # Asks the application services for an unknown local alias in their namespace;
        # True when one created it (spec AS API "Query Room Alias").
        self.unknown_alias_query: Callable[[str], Awaitable[bool]] | None = None

    def _local(self, alias: str) -> str:
        if not is_valid_room_alias(alias):
            raise invalid_param("Invalid room alias")
        if alias.split(":", 1)[1] != self.rooms.server_name:
            raise not_found("Room alias not found")  # not ours to change or list
        return alias

    async def resolve(self, alias: str) -> tuple[str, list[str]]:
        if (
            self.remote_lookup is not None
            and is_valid_room_alias(alias)
            and alias.split(":", 1)[1] != self.rooms.server_name
        ):
            return await self.remote_lookup(alias)
        found = await self.rooms.rooms.get_alias(self._local(alias))
        if found is None and self.unknown_alias_query is not None:
            if await self.unknown_alias_query(alias):
                found = await self.rooms.rooms.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        return found[0], [self.rooms.server_name]

    async def create(self, user_id: str, alias: str, room_id: str) -> None:
        alias = self._local(alias)
        if self.rooms.alias_claim_check is not None:
            self.rooms.alias_claim_check(user_id, alias)
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        member = await self.rooms.members.get(room.room_nid, user_id)
        if member is None or member.membership != "join":
            raise not_in_room()
        ok = await self.rooms.rooms.create_alias(
            alias, room.room_nid, user_id, self.rooms.clock.now_ms()
        )
        if not ok:
            raise MatrixError(409, "M_UNKNOWN", "Room alias already exists")

    async def delete(self, requester: Requester, alias: str) -> None:
        alias = self._local(alias)
        found = await self.rooms.rooms.get_alias(alias)
        if found is None:
            raise not_found("Room alias not found")
        room_id, creator = found
        if creator != requester.user_id and not requester.is_admin:
            room = await self.rooms.room_or_forbidden(room_id)
            state = await self.rooms.current_state(room, [POWER_LEVELS_KEY, CREATE_KEY])
            pl = state.get(POWER_LEVELS_KEY)
            create = state.get(CREATE_KEY)
            level = user_power_level(
                requester.user_id,
                None if pl is None else pl.event,
                None if create is None else create.event,
            )
            needed = 50
            if pl is not None:
                events = pl.event.content.get("events", {})
                value = events.get("m.room.canonical_alias") if isinstance(events, dict) else None
                needed = value if isinstance(value, int) else 50
            if level < needed:
                raise forbidden("You did not create this alias and lack the power to remove it")
        await self.rooms.rooms.delete_alias(alias)
        await self._drop_from_canonical(requester.user_id, room_id, alias)

    async def _drop_from_canonical(self, user_id: str, room_id: str, alias: str) -> None:
        """A deleted alias leaves the room's m.room.canonical_alias too (as Synapse does),
        sent by the deleting user when their power allows it."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return
        current = await self.rooms.current_state_event(room, CANONICAL_ALIAS)
        if current is None:
            return
        content = dict(current.event.content)
        alt = content.get("alt_aliases")
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self.rooms.send_event(user_id, room_id, CANONICAL_ALIAS, content, "")
        except MatrixError:
            pass  # not allowed to change it: the alias is gone, the event stays stale

    async def check_canonical_alias(
        self, room_id: str, content: dict[str, Any], state_key: str
    ) -> None:
        """Before an m.room.canonical_alias is sent: every alias it adds must be a valid
        alias that points to this room (spec: "Room aliases", 400 M_BAD_ALIAS). Aliases
        already in the current event, or removed, are not checked."""
        room = await self.rooms.room_or_forbidden(room_id)
        current = await self.rooms.current_state_event(room, CANONICAL_ALIAS, state_key)
        before = set(_aliases_of(current.event.content)) if current is not None else set()
        alt = content.get("alt_aliases")
        if alt is not None and not (isinstance(alt, list) and all(isinstance(a, str) for a in alt)):
            raise bad_alias("'alt_aliases' must be a list of aliases")
        if "alias" in content and not isinstance(content["alias"], str):
            raise bad_alias("'alias' must be a room alias")
        for alias in _aliases_of(content):
            if alias in before:
                continue
            if not is_valid_room_alias(alias):
                # Not an alias at all (as Synapse answers): M_BAD_ALIAS is for aliases that
                # do not exist or point elsewhere.
                raise invalid_param(f"{alias} is not a valid room alias")
            try:
                target, _ = await self.resolve(alias)
            except MatrixError:
                raise bad_alias(f"{alias} does not exist") from None
            if target != room_id:
                raise bad_alias(f"{alias} points to another room")

    async def room_aliases(self, user_id: str, room_id: str) -> list[str]:
        room = await self.rooms.room_or_forbidden(room_id)
        await self.reader._view(user_id, room)
        return await self.rooms.rooms.aliases_for_room(room.room_nid)


CANONICAL_ALIAS = "m.room.canonical_alias"


def bad_alias(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_ALIAS", error)


def _aliases_of(content: dict[str, Any]) -> list[str]:
    out = [content["alias"]] if isinstance(content.get("alias"), str) else []
    alt = content.get("alt_aliases")
    if isinstance(alt, list):
        out += [a for a in alt if isinstance(a, str)]
    return out
