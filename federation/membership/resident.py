"""The resident server's side of the membership handshakes (server-server "Joining
Rooms", "Knocking upon a room", "Leaving Rooms", "Inviting to a room").

make_*: a template built on our extremities and current state, refused when
the auth rules would refuse the event. send_*: the signed event goes
through the inbound pipeline like any PDU (same checks, same persistence),
then we relay it to the other servers in the room. Receiving an invite for
a room we are not in stores it out-of-band so the invitee's /sync shows it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from federation.outbound import OutboundRooms
from federation.pdu.acl import denied
from federation.pdu.parse import PduDropped
from federation.pdu.pipeline import MISSING_FOR_RESOLUTION, PduPipeline, Prefetched
from homeserver.errors import MatrixError, bad_json, forbidden, not_found
from homeserver.events.keys import SigningKey
from homeserver.events.model import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.events.signing import reference_hash_entry, sign_event
from homeserver.rooms.auth import AuthError, auth_types_for_event, check_auth
from homeserver.rooms.auth.constants import AUTHORISING_USER, CREATE_KEY, JOIN, MEMBER
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.chain_writer import MAX_PREV_EVENTS
from homeserver.rooms.invite_protection import InviteProtection
from homeserver.rooms.membership import room_blocked
from homeserver.rooms.persist import NewRoom, PersistPlan
from homeserver.rooms.restricted import RestrictedJoins
from homeserver.rooms.serialize import STRIPPED_STATE_KEYS, stripped_state
from homeserver.rooms.service import RoomService
from homeserver.rooms.state_res import MissingEvents
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

log = logging.getLogger("myelin.federation.membership")

NAME = "m.room.name"
CANONICAL_ALIAS = "m.room.canonical_alias"
# How many members name a room without a name (spec: the room summary's m.heroes).
HEROES = 5


def _will_sign(event: Event, server_name: str) -> bool:
    return True


def _references(events: list[Event], rv: RoomVersion) -> list[Any]:
    """Event ids, or in room versions 1-2 ``[event_id, {"sha256": hash}]`` pairs."""
    if rv.event_id_in_pdu:
        return [[e.event_id, reference_hash_entry(e.pdu, rv)] for e in events]
    return [e.event_id for e in events]


def incompatible(version: str) -> MatrixError:
    return MatrixError(
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
        "Your homeserver does not support this room version",
        room_version=version,
    )


class ResidentMembership:
    def __init__(
        self,
        server_name: str,
        signing_key: SigningKey,
        rooms: RoomService,
        pipeline: PduPipeline,
        outbound: OutboundRooms,
    ) -> None:
        self.server_name = server_name
        self.signing_key = signing_key
        self.rooms = rooms
        self.pipeline = pipeline
        self.outbound = outbound
        self.restricted = RestrictedJoins(server_name, rooms)
        # Rooms a server admin blocked: no remote user joins or knocks through
        # us, and our users get no invites to them (set by FederatedRooms.attach).
        self.blocked: Callable[[str], Awaitable[bool]] | None = None
        # Server-wide invite blocks (config invite_protection), set by attach.
        self.invite_protection: InviteProtection | None = None

    async def _refuse_blocked(self, room_id: str) -> None:
        if self.blocked is not None and await self.blocked(room_id):
            raise room_blocked()

    async def _refuse_partial(self, room: RoomInfo) -> None:
        """A room we joined with partial state: we cannot judge a join or knock, nor
        give the state, until we hold the members (the requester tries another server)."""
        partial = self.pipeline.is_partial
        if partial is not None and await partial(room.room_nid):
            raise not_found("This server does not have the room's whole state yet")

    async def _room(self, origin: str, room_id: str) -> RoomInfo:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None or not await self.rooms.events.extremities(room.room_nid):
            raise not_found("Unknown room")
        if not await self.pipeline.server_allowed(room, origin):
            raise denied()
        return room

    async def make(
        self, origin: str, room_id: str, user_id: str, membership: str, versions: list[str] | None
    ) -> dict[str, Any]:
        """make_join / make_leave / make_knock: a template event for ``user_id``."""
        room = await self._room(origin, room_id)
        if membership != "leave":
            await self._refuse_blocked(room.room_id)
            await self._refuse_partial(room)
            if self.server_name not in await self.outbound.servers_in_room(room):
                # All our users have left: we can no longer vouch for the room's state
                # (and could not send the event on to anyone).
                raise not_found("This server is no longer in the room")
        if domain_of(user_id) != origin:
            raise forbidden("The user does not belong to the requesting server")
        rv = room.version
        if versions is not None and rv.identifier not in versions:
            raise incompatible(rv.identifier)
        content: dict[str, Any] = {"membership": membership}
        if membership == JOIN and rv.restricted_join:
            authoriser = await self.restricted.authoriser_for(room, user_id)
            if authoriser is not None:
                content[AUTHORISING_USER] = authoriser
        keys = auth_types_for_event(MEMBER, user_id, user_id, content, rv)
        cur = await self.rooms.current_state(room, [*keys, CREATE_KEY])
        prev = (await self.rooms.events.extremities(room.room_nid))[-MAX_PREV_EVENTS:]
        prev_events = [p.event for p in prev]
        auth_events = [cur[k].event for k in keys if k in cur]
        template: dict[str, Any] = {
            "type": MEMBER,
            "room_id": room.room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": content,
            "prev_events": _references(prev_events, rv),
            "auth_events": _references(auth_events, rv),
            "depth": max(p.event.depth for p in prev) + 1,
            "origin": origin,
            "origin_server_ts": 0,
        }
        state = {k: s.event for k, s in cur.items()}
        try:
            # The template is not signed yet; the authoriser's signature comes in send_join.
            check_auth(Event("$template", template, rv), state, verify_server_signature=_will_sign)
        except AuthError as e:
            raise forbidden(e.reason) from None
        return {"event": template, "room_version": rv.identifier}

    async def send(
        self, origin: str, room_id: str, event_id: str, pdu: Any, membership: str
    ) -> tuple[StoredEvent, RoomInfo]:
        """send_join / send_leave / send_knock: check and persist, then relay."""
        room = await self._room(origin, room_id)
        if membership != "leave":
            await self._refuse_partial(room)
        event = await self._checked(pdu, room.version)
        if event.event_id != event_id or event.room_id != room.room_id:
            raise bad_json("The event does not match the request path")
        if event.type != MEMBER or event.state_key != event.sender:
            raise bad_json("Expected a membership event of the sender")
        if event.membership != membership:
            raise bad_json(f"Expected a {membership} event")
        if domain_of(event.sender) != origin:
            raise forbidden(f"The {membership} is not of a user of the requesting server")
        event = await self._countersign_restricted(room, event)
        shown: list[StoredEvent] = []
        try:
            async with self.rooms.lock(room.room_id):
                # Built on our own template: nothing to fetch, so no network under the lock.
                error = await self.pipeline.process(origin, room, event, shown, ahead=Prefetched())
        except MissingEvents:
            error = MISSING_FOR_RESOLUTION
        stored = await self.rooms.events.by_id(event.event_id)
        if error is not None or stored is None or stored.stream_ordering is None:
            raise forbidden(error or "The event is not allowed in the room now")
        for s in shown:
            await self.rooms.after_persist(s, room)
        await self.outbound.relay(stored, room, exclude={origin})
        return stored, room

    async def _checked(self, pdu: Any, rv: RoomVersion) -> Event:
        """Steps 1-3 of receipt for a membership handshake: a malformed event is 400
        M_BAD_JSON, one not signed as it must be 403 M_FORBIDDEN."""
        try:
            return (await self.pipeline.fetcher.check(pdu, rv))[0]
        except PduDropped as e:
            log.info("membership event refused: %s", e.reason)
            if e.bad_signature:
                raise forbidden("The event is not signed as it must be") from None
            raise bad_json("Invalid event") from None

    async def _countersign_restricted(self, room: RoomInfo, event: Event) -> Event:
        """A join naming one of our users as its authoriser: check again that the join
        needs and deserves it (send_join may come without make_join), then sign it."""
        named = RestrictedJoins.named_authoriser(event.content)
        if named is None or event.membership != JOIN or domain_of(named) != self.server_name:
            return event
        if await self.restricted.authoriser_for(room, event.sender) is None:
            return event  # not needed: the auth rules judge the event as it is
        pdu = sign_event(event.pdu, self.server_name, self.signing_key, room.version)
        return Event(event.event_id, pdu, room.version)

    async def send_join(
        self, origin: str, room_id: str, event_id: str, pdu: Any, omit_members: bool = False
    ) -> dict[str, Any]:
        """The state before the join and its auth chain. With ``omit_members`` (a
        partial-state join, spec server-server ``PUT /v2/send_join``), the membership
        events are left out of the state but for the heroes' when the room has no name
        or alias, and the auth chain keeps only what the returned events and the join
        need, without what the state already holds. ``servers_in_room``: the servers
        with a joined member before the join."""
        known = await self.rooms.rooms.get_room(room_id)
        servers = sorted(await self.outbound.servers_in_room(known)) if known else []
        stored, room = await self.send(origin, room_id, event_id, pdu, "join")
        graph = self.pipeline.graph
        if omit_members:
            state_events = await self._partial_state(room, stored)
            returned = set(state_events)
            chain = await graph.auth_chain([*returned, stored.event.event_id])
            auth = [s.event.pdu for i, s in chain.items() if i not in returned]
        else:
            state = await graph.state_before(stored)
            state_events = await self.rooms.events.by_ids(state.values())
            chain = await graph.auth_chain([*state.values(), stored.event.event_id])
            auth = [s.event.pdu for s in chain.values()]
        return {
            "origin": self.server_name,
            "state": [s.event.pdu for s in state_events.values()],
            "auth_chain": auth,
            "event": stored.event.pdu,
            "members_omitted": omit_members,
            "servers_in_room": servers,
        }

    async def _partial_state(self, room: RoomInfo, join: StoredEvent) -> dict[str, StoredEvent]:
        """The state before the join without membership events, but for the heroes'
        when the room has neither a name nor a canonical alias (the joining server
        names the room from them until it has the whole state). Only the events
        returned are loaded, never the members'."""
        assert join.state_group is not None
        nids = await self.rooms.state.state_at_group(join.state_group)
        keys = await self.rooms.rooms.keys_for_nids(nids.keys())
        wanted = {keys[k]: n for k, n in nids.items() if k in keys and keys[k][0] != MEMBER}
        if not ({(NAME, ""), (CANONICAL_ALIAS, "")} & wanted.keys()):
            members = self.rooms.members
            joiner = join.event.sender
            heroes = await members.earliest(room.room_nid, joiner, ("join", "invite"), HEROES)
            if not heroes:
                heroes = await members.earliest(room.room_nid, joiner, ("leave", "ban"), HEROES)
            by_key = {key: k for k, key in keys.items() if key[0] == MEMBER}
            for h in heroes:
                k = by_key.get((MEMBER, h))
                if k is not None:
                    wanted[(MEMBER, h)] = nids[k]
        # The group holds the state after the join: the joiner's own membership is a
        # member key (never a hero), so what is left is the state before it.
        found = await self.rooms.events.by_nids(wanted.values())
        return {s.event.event_id: s for s in found.values()}

    async def send_knock(
        self, origin: str, room_id: str, event_id: str, pdu: Any
    ) -> dict[str, Any]:
        _, room = await self.send(origin, room_id, event_id, pdu, "knock")
        state = await self.rooms.current_state(room, STRIPPED_STATE_KEYS)
        return {"knock_room_state": stripped_state(list(state.values()))}

    async def receive_invite(
        self, origin: str, room_id: str, event_id: str, body: Any
    ) -> dict[str, Any]:
        """``PUT /v2/invite``: countersign an invite of one of our users, and keep it
        out-of-band when we are not in the room."""
        if not isinstance(body, dict) or not isinstance(body.get("event"), dict):
            raise bad_json("Expected 'event'")
        version = body.get("room_version")
        rv = KNOWN_ROOM_VERSIONS.get(version) if isinstance(version, str) else None
        if rv is None:
            raise incompatible(str(version))
        event = await self._checked(body["event"], rv)
        target = event.state_key or ""
        if event.event_id != event_id or event.room_id != room_id:
            raise bad_json("The event does not match the request path")
        if event.type != MEMBER or event.membership != "invite":
            raise bad_json("Expected an invite")
        if domain_of(target) != self.server_name or domain_of(event.sender) != origin:
            raise forbidden("The invite is not from the requesting server to one of our users")
        if self.invite_protection is not None:
            self.invite_protection.check(event.sender)
        room = await self.rooms.rooms.get_room(room_id)
        if room is not None and not await self.pipeline.server_allowed(room, origin):
            raise denied()
        await self._refuse_blocked(room_id)
        signed = sign_event(event.pdu, self.server_name, self.signing_key, rv)
        resident = room is not None and await self.outbound.servers_in_room(room) & {
            self.server_name
        }
        if not resident and await self.rooms.events.by_id(event_id) is None:
            given = body.get("invite_room_state")
            stripped = [
                {k: e[k] for k in ("type", "state_key", "content", "sender") if k in e}
                for e in (given if isinstance(given, list) else [])
                if isinstance(e, dict)
            ]
            kept = Event(event_id, {**signed, "unsigned": {"invite_room_state": stripped}}, rv)
            await self.store_out_of_band(kept, room)
        return {"event": signed}

    async def store_out_of_band(self, event: Event, room: RoomInfo | None) -> StoredEvent:
        """An invite/knock/leave of a room we are not in: no state, but a
        membership row and a stream position so /sync shows it."""
        plan = PersistPlan(
            event=event,
            prev_nids=[],
            state_group_before=None,
            replaces_nid=None,
            outlier=True,
            out_of_band=True,
        )
        async with self.rooms.lock(event.room_id):
            if room is None:
                stored = await self.rooms.persister.persist(
                    plan, None, NewRoom(event.room_id, event.sender)
                )
                room = await self.rooms.rooms.get_room(event.room_id)
                assert room is not None
            else:
                stored = await self.rooms.persister.persist(plan, room.room_nid)
        await self.rooms.after_persist(stored, room)
        return stored
