"""Membership changes of local users: join, leave, invite, kick, ban, unban, knock, forget.

Each is one ``m.room.member`` event through ``RoomService.create_and_send``;
whether it is allowed is decided by the auth rules in the shared check, so
a banned user cannot join and a member without power cannot kick. Refusals
carry the failed rule as their reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from homeserver.errors import MatrixError, forbidden, invalid_param, not_found
from homeserver.events.identifiers import is_valid_room_alias, is_valid_user_id
from homeserver.rooms.auth.constants import AUTHORISING_USER
from homeserver.rooms.invite_protection import InviteProtection
from homeserver.rooms.restricted import RestrictedJoins
from homeserver.rooms.service import RoomService, not_in_room
from homeserver.rooms.store.rooms_store import RoomInfo

# user id -> {"displayname": ..., "avatar_url": ...} (empty when unknown)
ProfileLookup = Callable[[str], Awaitable[dict[str, str]]]
# room id -> whether a server admin blocked it (no local user may enter it).
BlockedCheck = Callable[[str], Awaitable[bool]]


# Keys of a join body a client may not set: they decide whether the join is
# allowed (restricted joins, third-party invites) or what it is.
_PROTECTED_MEMBER_KEYS = frozenset({"membership", AUTHORISING_USER, "third_party_invite"})


def custom_member_content(body: dict[str, Any]) -> dict[str, Any]:
    """The extra keys of a ``POST /join`` body that go into the member event.

    The spec's join body names ``reason`` and ``third_party_signed``; clients
    also send other keys (per-room profiles, app data) and Synapse copies them
    into the event. Protected keys are dropped; null values are left out."""
    return {
        k: v
        for k, v in body.items()
        if k not in _PROTECTED_MEMBER_KEYS
        and k not in ("reason", "third_party_signed")
        and v is not None
    }


def room_blocked() -> MatrixError:
    return forbidden("This room has been blocked on this server")


class RemoteMembership(Protocol):
    """Membership handshakes with other servers (federation fills this seam).

    Used when this server is not in the room: joining or knocking on a room
    known only to others, and rejecting an invite or retracting a knock that
    came from another server."""

    async def join(
        self, user_id: str, room_id_or_alias: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str: ...

    async def knock(
        self, user_id: str, room_id_or_alias: str, servers: Sequence[str], content: dict[str, Any]
    ) -> str: ...

    async def leave(self, user_id: str, room: RoomInfo, content: dict[str, Any]) -> None: ...


class MembershipService:
    def __init__(
        self,
        rooms: RoomService,
        profiles: ProfileLookup,
        invite_protection: InviteProtection | None = None,
    ) -> None:
        self.rooms = rooms
        self.profiles = profiles
        self.invite_protection = invite_protection
        # Joins, knocks and leaves through other servers; None without federation. Bound
        # late by federation (FederatedRooms.attach), which is built on this area's room
        # service: a real cycle between the two.
        self.remote: RemoteMembership | None = None
        self.restricted = RestrictedJoins(rooms.server_name, rooms)
        # Set by the composition root: rooms an admin blocked (admin API).
        self.blocked: BlockedCheck | None = None

    async def is_blocked(self, room_id: str) -> bool:
        """Whether an admin blocked the room (federation asks too, for remote joins)."""
        return self.blocked is not None and await self.blocked(room_id)

    async def _refuse_blocked(self, room_id_or_alias: str) -> None:
        if room_id_or_alias.startswith("!") and await self.is_blocked(room_id_or_alias):
            raise room_blocked()

    async def is_resident(self, room: RoomInfo) -> bool:
        """Whether a user of this server is joined (so this server holds the room's state)."""
        return await self.rooms.members.has_joined_on(room.room_nid, self.rooms.server_name)

    async def _needs_remote(self, room_id_or_alias: str) -> bool:
        """Whether joining/knocking must go through another server."""
        if self.remote is None:
            return False
        if room_id_or_alias.startswith("#"):
            if room_id_or_alias.endswith(":" + self.rooms.server_name):
                return False
            if not is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            return True
        if not room_id_or_alias.startswith("!"):
            return False
        room = await self.rooms.rooms.get_room(room_id_or_alias)
        return room is None or not await self.is_resident(room)

    async def resolve_room(self, room_id_or_alias: str) -> RoomInfo:
        """A room by id or by local alias; 404 M_NOT_FOUND when unknown here."""
        if room_id_or_alias.startswith("#"):
            if not is_valid_room_alias(room_id_or_alias):
                raise invalid_param("Invalid room alias")
            found = await self.rooms.rooms.get_alias(room_id_or_alias)
            if found is None:
                raise not_found("Room alias not found")
            room_id_or_alias = found[0]
        elif not room_id_or_alias.startswith("!"):
            raise invalid_param("Expected a room id or a room alias")
        room = await self.rooms.rooms.get_room(room_id_or_alias)
        if room is None:
            raise not_found("No known room with that id")
        return room

    async def member_content(self, user_id: str, membership: str, **extra: Any) -> dict[str, Any]:
        content: dict[str, Any] = {"membership": membership}
        if membership in ("join", "invite", "knock"):
            content.update(await self.profiles(user_id))
        content.update({k: v for k, v in extra.items() if v is not None})
        return content

    async def _send(
        self, room: RoomInfo, sender: str, target: str, membership: str, **extra: Any
    ) -> str:
        content = await self.member_content(target, membership, **extra)
        stored = await self.rooms.create_and_send(
            room,
            sender,
            "m.room.member",
            content,
            target,
            keep_unchanged=membership == "join" and sender == target,
        )
        return stored.event.event_id

    async def join(
        self,
        user_id: str,
        room_id_or_alias: str,
        reason: str | None = None,
        servers: Sequence[str] = (),
        *,
        is_guest: bool = False,
        custom: dict[str, Any] | None = None,
    ) -> str:
        """Join a room; ``custom`` are extra member-event keys (``custom_member_content``)."""
        custom = dict(custom or {})
        await self._refuse_blocked(room_id_or_alias)
        if self.remote is not None and await self._needs_remote(room_id_or_alias):
            if is_guest and not await self._invited_guests_may_join(user_id, room_id_or_alias):
                # Guest access is decided by the room's m.room.guest_access, which
                # this server does not hold for a room it is not in: only the
                # stripped state of an invite to it can tell.
                raise MatrixError(
                    403, "M_FORBIDDEN", "Guests may only join rooms that allow guests"
                )
            content = await self.member_content(user_id, "join", **custom, reason=reason)
            return await self.remote.join(user_id, room_id_or_alias, servers, content)
        room = await self.resolve_room(room_id_or_alias)
        await self._refuse_blocked(room.room_id)
        if is_guest and not await self.guests_may_join(room):
            raise MatrixError(
                403, "M_FORBIDDEN", "Guests may only join rooms whose guest_access is can_join"
            )
        # A restricted room admits members of its allowed rooms (spaces) without an
        # invite; a local member with the power to invite authorises the join.
        authoriser = await self.restricted.authoriser_for(room, user_id)
        if authoriser is not None:
            custom[AUTHORISING_USER] = authoriser
        await self._send(room, user_id, user_id, "join", reason=reason, **custom)
        return room.room_id

    async def _invited_guests_may_join(self, user_id: str, room_id: str) -> bool:
        """A remote room the guest is invited to, whose invite's stripped state
        (``invite_room_state``) shows m.room.guest_access = can_join."""
        room = await self.rooms.rooms.get_room(room_id) if room_id.startswith("!") else None
        if room is None:
            return False
        own = await self.rooms.members.get(room.room_nid, user_id)
        if own is None or own.membership != "invite":
            return False
        invite = (await self.rooms.events.by_nids([own.event_nid])).get(own.event_nid)
        unsigned = None if invite is None else invite.event.pdu.get("unsigned")
        stripped = unsigned.get("invite_room_state") if isinstance(unsigned, dict) else None
        return any(
            isinstance(e, dict)
            and e.get("type") == "m.room.guest_access"
            and e.get("state_key") == ""
            and isinstance(e.get("content"), dict)
            and e["content"].get("guest_access") == "can_join"
            for e in (stripped if isinstance(stripped, list) else [])
        )

    async def guests_may_join(self, room: RoomInfo) -> bool:
        """Spec "Guest access": only with m.room.guest_access = can_join."""
        ga = await self.rooms.current_state_event(room, "m.room.guest_access")
        return ga is not None and ga.event.content.get("guest_access") == "can_join"

    async def remove_guests(
        self, room: RoomInfo, is_guest: Callable[[str], Awaitable[bool]]
    ) -> None:
        """guest_access stopped being can_join: local guests leave (spec "Guest access")."""
        if await self.guests_may_join(room):
            return
        suffix = ":" + self.rooms.server_name
        for m in await self.rooms.members.members(room.room_nid, ("join",)):
            if m.user_id.endswith(suffix) and await is_guest(m.user_id):
                try:
                    await self._send(room, m.user_id, m.user_id, "leave")
                except MatrixError:
                    continue

    async def knock(
        self,
        user_id: str,
        room_id_or_alias: str,
        reason: str | None = None,
        servers: Sequence[str] = (),
    ) -> str:
        await self._refuse_blocked(room_id_or_alias)
        if self.remote is not None and await self._needs_remote(room_id_or_alias):
            content = await self.member_content(user_id, "knock", reason=reason)
            return await self.remote.knock(user_id, room_id_or_alias, servers, content)
        room = await self.resolve_room(room_id_or_alias)
        await self._refuse_blocked(room.room_id)
        await self._send(room, user_id, user_id, "knock", reason=reason)
        return room.room_id

    async def leave(self, user_id: str, room_id: str, reason: str | None = None) -> None:
        room = await self.rooms.room_or_forbidden(room_id)
        current = await self.rooms.members.get(room.room_nid, user_id)
        if current is None or current.membership in ("leave", "ban"):
            if current is not None and current.membership == "leave":
                return  # already left: nothing to do
            raise not_in_room()
        if (
            self.remote is not None
            and current.membership in ("invite", "knock")
            and not await self.is_resident(room)
        ):
            content = await self.member_content(user_id, "leave", reason=reason)
            try:
                await self.remote.leave(user_id, room, content)
                return
            except MatrixError as e:
                # No other server to ask: the invite came from this server's own room
                # (its members have all left since), whose state we hold, so the
                # rejection is an ordinary local leave.
                if e.errcode != "M_NOT_FOUND":
                    raise
        await self._send(room, user_id, user_id, "leave", reason=reason)

    async def invite(
        self,
        user_id: str,
        room_id: str,
        target: str,
        reason: str | None = None,
        is_direct: bool | None = None,
        *,
        counted: bool = False,
    ) -> None:
        """``counted``: the invite protection already passed it (createRoom's list)."""
        await self._refuse_blocked(room_id)
        room = await self._target_room(room_id, target)
        if self.invite_protection is not None and not counted:
            self.invite_protection.check_local(user_id)
        current = await self.rooms.members.get(room.room_nid, target)
        if current is not None and current.membership == "ban":
            raise forbidden(f"{target} is banned from the room")
        if current is not None and current.membership == "join":
            raise forbidden(f"{target} is already in the room")
        await self._send(room, user_id, target, "invite", reason=reason, is_direct=is_direct)

    async def invite_content(self, target: str, is_direct: bool | None) -> dict[str, Any]:
        """The content of an invite of ``target`` (createRoom builds its invites itself)."""
        return await self.member_content(target, "invite", is_direct=is_direct)

    async def kick(self, user_id: str, room_id: str, target: str, reason: str | None) -> None:
        room = await self._target_room(room_id, target)
        current = await self.rooms.members.get(room.room_nid, target)
        if current is None or current.membership in ("leave", "ban"):
            raise forbidden(f"{target} is not a member of the room")
        await self._send(room, user_id, target, "leave", reason=reason)

    async def ban(self, user_id: str, room_id: str, target: str, reason: str | None) -> None:
        room = await self._target_room(room_id, target)
        await self._send(room, user_id, target, "ban", reason=reason)

    async def unban(self, user_id: str, room_id: str, target: str, reason: str | None) -> None:
        room = await self._target_room(room_id, target)
        current = await self.rooms.members.get(room.room_nid, target)
        if current is None or current.membership != "ban":
            raise forbidden(f"{target} is not banned")
        await self._send(room, user_id, target, "leave", reason=reason)

    async def forget(self, user_id: str, room_id: str) -> None:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            raise not_found("Unknown room")
        current = await self.rooms.members.get(room.room_nid, user_id)
        if current is None:
            raise not_found("You have never been in this room")
        if current.membership in ("join", "invite", "knock"):
            raise MatrixError(400, "M_UNKNOWN", "You must leave the room before forgetting it")
        await self.rooms.members.forget(room.room_nid, user_id)

    async def _target_room(self, room_id: str, target: str) -> RoomInfo:
        # Appendices "Historical User IDs": servers MUST accept the older, wider
        # localpart grammar (remote users of old rooms still have such ids).
        if not is_valid_user_id(target, strict=False):
            raise invalid_param("Invalid user id")
        return await self.rooms.room_or_forbidden(room_id)

    # --------------------------------------------------- account hooks

    async def profile_changed(self, user_id: str) -> None:
        """Send a fresh join event carrying the new profile into every joined room."""
        profile = await self.profiles(user_id)
        joined = await self.rooms.members.rooms_for_user(user_id, ("join",))
        infos = await self.rooms.rooms.rooms_by_nid(m.room_nid for m in joined)
        olds = await self.rooms.events.by_nids(m.event_nid for m in joined)
        for m in joined:
            room = infos.get(m.room_nid)
            old = olds.get(m.event_nid)
            if room is None:
                continue
            content = dict(old.event.content) if old is not None else {"membership": "join"}
            content.pop("displayname", None)
            content.pop("avatar_url", None)
            content.update(profile)
            try:
                await self.rooms.create_and_send(room, user_id, "m.room.member", content, user_id)
            except MatrixError:
                continue

    async def deactivated(self, user_id: str) -> None:
        """Leave every room (joined, invited, knocking) of a deactivated user."""
        rooms = await self.rooms.members.rooms_for_user(user_id, ("join", "invite", "knock"))
        infos = await self.rooms.rooms.rooms_by_nid(m.room_nid for m in rooms)
        for m in rooms:
            room = infos.get(m.room_nid)
            if room is None:
                continue
            try:
                await self.rooms.create_and_send(
                    room, user_id, "m.room.member", {"membership": "leave"}, user_id
                )
            except MatrixError:
                continue
