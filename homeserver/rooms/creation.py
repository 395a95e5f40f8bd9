"""createRoom: the initial events of a new room, in the order the spec lists.

Spec: client-server "POST /createRoom": create, the creator's join,
power levels (with ``power_level_content_override``), canonical alias, the
preset's join rules / history visibility / guest access, ``initial_state``,
name, topic, then invites. Every event is built and checked the way any other
is (``ChainWriter``), each on the one before, and the room row, the alias and
every initial event up to the first invite of a remote user are persisted in
ONE transaction (``RoomService.create_room_chain``): one commit instead of one
per event, and a failure anywhere leaves no half-made room. A remote user's
invite is signed by their server first, outside any transaction, so it and
the invites after it follow one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.errors import MatrixError, invalid_param
from homeserver.events.identifiers import is_valid_room_alias, is_valid_user_id
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.rooms.third_party_invites import ThirdPartyInvites
from homeserver.storage.database import Queries

PRESETS = {
    # preset: (join_rule, history_visibility, guest_access, invitees are admins), as the
    # spec's createRoom preset table lists them.
    "private_chat": ("invite", "shared", "can_join", False),
    "trusted_private_chat": ("invite", "shared", "can_join", True),
    "public_chat": ("public", "shared", "forbidden", False),
}


@dataclass
class CreateRoomRequest:
    creator: str
    preset: str | None = None
    visibility: str = "private"
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: list[str] = field(default_factory=list)
    # {id_server, id_access_token, medium, address} each, checked by the API.
    invite_3pid: list[dict[str, str]] = field(default_factory=list)
    initial_state: list[dict[str, Any]] = field(default_factory=list)
    room_version: str | None = None
    creation_content: dict[str, Any] = field(default_factory=dict)
    power_level_content_override: dict[str, Any] | None = None
    is_direct: bool = False


def power_levels_content(
    rv: RoomVersion, creator: str, preset: str, invitees: list[str]
) -> dict[str, Any]:
    """The default power levels of a new room (creators are implicit in v12)."""
    users: dict[str, int] = {}
    if not rv.privileged_creators:
        users[creator] = 100
        if PRESETS[preset][3]:
            users.update({u: 100 for u in invitees})
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
    }


class RoomCreator:
    def __init__(
        self,
        rooms: RoomService,
        memberships: MembershipService,
        default_version: str,
        allow_publishing: bool,
    ) -> None:
        self.rooms = rooms
        self.memberships = memberships
        self.default_version = default_version
        self.allow_publishing = allow_publishing
        # Set by the rooms wiring (it is built on the membership service too).
        self.third_party: ThirdPartyInvites | None = None

    def _validate(self, req: CreateRoomRequest) -> tuple[RoomVersion, str, str | None]:
        version_id = req.room_version or self.default_version
        rv = KNOWN_ROOM_VERSIONS.get(version_id)
        if rv is None:
            raise MatrixError(
                400, "M_UNSUPPORTED_ROOM_VERSION", f"Room version {version_id} is not supported"
            )
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        if preset not in PRESETS:
            raise invalid_param(f"Unknown preset {preset}")
        if req.visibility not in ("public", "private"):
            raise invalid_param("visibility must be 'public' or 'private'")
        for user in req.invite:
            if not is_valid_user_id(user):
                raise invalid_param("Invalid user id in 'invite'")
        alias = None
        if req.room_alias_name is not None:
            alias = f"#{req.room_alias_name}:{self.rooms.server_name}"
            if ":" in req.room_alias_name or not is_valid_room_alias(alias):
                raise invalid_param("Invalid room_alias_name")
            if self.rooms.alias_claim_check is not None:
                self.rooms.alias_claim_check(req.creator, alias)
        for entry in req.initial_state:
            if not isinstance(entry.get("type"), str) or not isinstance(entry.get("content"), dict):
                raise invalid_param("initial_state entries need a type and a content object")
            if not isinstance(entry.get("state_key", ""), str):
                raise invalid_param("initial_state state_key must be a string")
        return rv, preset, alias

    async def create_room(self, req: CreateRoomRequest) -> RoomInfo:
        rv, preset, alias = self._validate(req)
        protection = self.memberships.invite_protection
        if protection is not None and req.invite:
            # Before the room exists: a refused invite list leaves no half-made room.
            protection.check_local(req.creator, len(req.invite))
        if alias is not None and await self.rooms.rooms.get_alias(alias) is not None:
            raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
        if req.visibility == "public" and not self.allow_publishing:
            raise MatrixError(403, "M_FORBIDDEN", "Publishing rooms is disabled on this server")

        create_content = dict(req.creation_content)
        create_content["room_version"] = rv.identifier
        if rv.implicit_room_creator:
            create_content.pop("creator", None)
        else:
            create_content["creator"] = req.creator
        if rv.privileged_creators and PRESETS[preset][3] and req.invite:
            extra = list(create_content.get("additional_creators") or [])
            create_content["additional_creators"] = extra + [
                u for u in req.invite if u not in extra and u != req.creator
            ]
        create = await self.rooms.build_create_event(rv, req.creator, create_content)
        initial: list[tuple[str, dict[str, Any], str | None]] = []

        def send(etype: str, content: dict[str, Any], state_key: str | None = "") -> None:
            initial.append((etype, content, state_key))

        join = await self.memberships.member_content(req.creator, "join")
        send("m.room.member", join, req.creator)
        levels = power_levels_content(rv, req.creator, preset, req.invite)
        if req.power_level_content_override:
            levels.update(req.power_level_content_override)
        send("m.room.power_levels", levels)
        if alias is not None:
            send("m.room.canonical_alias", {"alias": alias})
        given = {(e["type"], e.get("state_key", "")) for e in req.initial_state}
        join_rule, visibility, guest_access, _ = PRESETS[preset]
        if ("m.room.join_rules", "") not in given:
            send("m.room.join_rules", {"join_rule": join_rule})
        if ("m.room.history_visibility", "") not in given:
            send("m.room.history_visibility", {"history_visibility": visibility})
        if ("m.room.guest_access", "") not in given and guest_access != "forbidden":
            # "forbidden" is what a room without the event means (spec m.room.guest_access),
            # so public_chat sends none, as Synapse does; clients see the same room.
            send("m.room.guest_access", {"guest_access": guest_access})
        for entry in req.initial_state:
            send(entry["type"], entry["content"], entry.get("state_key", ""))
        if req.name is not None:
            send("m.room.name", {"name": req.name})
        if req.topic is not None:
            # "an m.room.topic event with a text/plain mimetype" (spec, createRoom)
            text = [{"body": req.topic, "mimetype": "text/plain"}]
            send("m.room.topic", {"topic": req.topic, "m.topic": {"m.text": text}})
        # Invites of local users are initial events too; one of a remote user needs its
        # server's signature first (never inside the room's transaction), so it and
        # the invites after it are sent one by one once the room exists, in order.
        later = list(req.invite)
        while later and not self.rooms.chains.is_remote_invite(
            "m.room.member", {"membership": "invite"}, later[0]
        ):
            user = later.pop(0)
            is_direct = True if req.is_direct else None
            send("m.room.member", await self.memberships.invite_content(user, is_direct), user)

        async def also(q: Queries, room_nid: int) -> None:
            # In the room's own transaction: a taken alias makes no room at all.
            if alias is not None and not await self.rooms.rooms.create_alias_in(
                q, alias, room_nid, req.creator, self.rooms.clock.now_ms()
            ):
                raise MatrixError(400, "M_ROOM_IN_USE", "Room alias already taken")
            if req.visibility == "public":
                await self.rooms.rooms.set_public_in(q, room_nid, True)

        room, _ = await self.rooms.create_room_chain(create, req.creator, initial, also)
        for user in later:
            await self.memberships.invite(
                req.creator,
                room.room_id,
                user,
                is_direct=True if req.is_direct else None,
                counted=protection is not None,
            )
        for tp in req.invite_3pid:
            if self.third_party is None:
                raise invalid_param("Third-party invites are not available")
            await self.third_party.invite(
                req.creator,
                room.room_id,
                tp["id_server"],
                tp["id_access_token"],
                tp["medium"],
                tp["address"],
            )
        return room
