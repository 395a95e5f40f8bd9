"""Who may join a restricted room, and who authorises it (rooms v8+; spec client-server
"Restricted rooms", server-server "Restricted rooms").

Used for local users' joins (``MembershipService.join``) and, when this server is
resident, for other servers' make_join/send_join (federation/membership/resident.py):
one rule for both.

A user who is neither joined nor invited may join a ``restricted`` (or, from v10,
``knock_restricted``) room when they are joined to one of the rooms its ``allow`` list
names. Only a server in that room can tell, so the resident server checks it, picks one of
its own joined users with the power to invite as the authoriser
(``join_authorised_via_users_server`` in the make_join template), and countersigns the
join in send_join. The auth rules then only check the authoriser's signature, membership
and power.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import MatrixError
from homeserver.rooms.auth.constants import (
    AUTHORISING_USER,
    CREATE_KEY,
    INVITE,
    JOIN,
    JOIN_RULES_KEY,
    KNOCK_RESTRICTED,
    POWER_LEVELS_KEY,
    RESTRICTED,
)
from homeserver.rooms.auth.power_levels import invite_level, user_power_level
from homeserver.rooms.hierarchy_rules import allowed_room_ids
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.rooms_store import RoomInfo


def unable_to_authorise() -> MatrixError:
    return MatrixError(
        400, "M_UNABLE_TO_AUTHORISE_JOIN", "No local user can authorise this restricted join"
    )


class RestrictedJoins:
    def __init__(self, server_name: str, rooms: RoomService) -> None:
        self.server_name = server_name
        self.rooms = rooms

    async def authoriser_for(self, room: RoomInfo, user_id: str) -> str | None:
        """The local user to name in ``user_id``'s join, or None when the join needs none
        (the room is not restricted, or the user is already joined or invited).

        Raises M_FORBIDDEN when the user meets none of the allow conditions we can check,
        and M_UNABLE_TO_AUTHORISE_JOIN when no local user may authorise it.
        """
        cur = await self.rooms.current_state(room, [JOIN_RULES_KEY, POWER_LEVELS_KEY, CREATE_KEY])
        rules = cur.get(JOIN_RULES_KEY)
        content = rules.event.content if rules is not None else {}
        rule = content.get("join_rule")
        if rule != RESTRICTED and not (rule == KNOCK_RESTRICTED and room.version.knock_restricted):
            return None
        own = await self.rooms.members.get(room.room_nid, user_id)
        if own is not None and own.membership in (JOIN, INVITE):
            return None
        if not await self._meets_allow(content, user_id):
            raise MatrixError(
                403, "M_FORBIDDEN", "The user is not in any room this room admits members of"
            )
        create = cur.get(CREATE_KEY)
        create_event = create.event if create is not None else None
        pl = cur.get(POWER_LEVELS_KEY)
        pl_event = pl.event if pl is not None else None
        needed = invite_level(pl_event)
        suffix = ":" + self.server_name
        for member in await self.rooms.members.members(room.room_nid):
            if member.user_id.endswith(suffix) and (
                user_power_level(member.user_id, pl_event, create_event) >= needed
            ):
                return member.user_id
        raise unable_to_authorise()

    async def _meets_allow(self, join_rules: dict[str, Any], user_id: str) -> bool:
        for room_id in allowed_room_ids(join_rules):
            allowed = await self.rooms.rooms.get_room(room_id)
            if allowed is None:
                continue
            member = await self.rooms.members.get(allowed.room_nid, user_id)
            if member is not None and member.membership == JOIN:
                return True
        return False

    @staticmethod
    def named_authoriser(content: dict[str, Any]) -> str | None:
        value = content.get(AUTHORISING_USER)
        return value if isinstance(value, str) else None
