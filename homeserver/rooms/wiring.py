"""Builds the room area (stores, services, APIs) for the composition root.

Kept apart from app.py so the shared file needs only a few lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.accounts.auth import Authenticator
from homeserver.accounts.service import AccountService
from homeserver.api.directory import DirectoryApi
from homeserver.api.legacy_sync import LegacySyncApi
from homeserver.api.membership import MembershipApi
from homeserver.api.messages import MessagesApi
from homeserver.api.room_features import RoomFeaturesApi
from homeserver.api.rooms import RoomsApi
from homeserver.api.search import SearchApi
from homeserver.api.sync import SyncApi
from homeserver.api.voip import VoipApi
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.errors import MatrixError
from homeserver.events.keys import SigningKey
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.persist import EventPersister
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.relations import RelationAggregator, RelationsService
from homeserver.rooms.reports import ReportService
from homeserver.rooms.search import SearchService
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.relations_store import RelationStore
from homeserver.rooms.store.reports_store import ReportStore
from homeserver.rooms.store.rooms_store import RoomInfo, RoomStore
from homeserver.rooms.store.search_store import SearchStore
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.store.user_directory_store import UserDirectoryStore
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.rooms.user_directory import UserDirectory
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.legacy import LegacySync
from homeserver.sync.notifier import Notifier
from homeserver.sync.store import SyncStore


@dataclass
class RoomsArea:
    rooms: RoomService
    memberships: MembershipService
    creator: RoomCreator
    reader: RoomReader
    aliases: AliasService
    sync: SyncBuilder
    notifier: Notifier
    events: EventStore
    memberships_store: MembershipStore
    sync_store: SyncStore
    upgrader: RoomUpgrader
    directory: RoomDirectory
    relations: RelationsService
    reports: ReportService
    search: SearchService
    user_directory: UserDirectory
    config: Config
    clock: Clock
    serializer: EventSerializer

    async def is_joined(self, user_id: str, room_id: str) -> bool:
        """Whether ``user_id`` is joined to ``room_id`` now (for typing and receipts)."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return False
        membership = await self.memberships_store.get(room.room_nid, user_id)
        return membership is not None and membership.membership == "join"

    async def event_in_room(self, room_id: str, event_id: str) -> bool:
        """Whether ``event_id`` is a (non-rejected) event of ``room_id``."""
        stored = await self.events.by_id(event_id)
        return (
            stored is not None
            and stored.rejected_reason is None
            and stored.event.room_id == room_id
        )

    async def local_members(self, room_id: str) -> list[str]:
        """Local users joined, invited or knocking in ``room_id`` (whom to wake)."""
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return []
        return await self.memberships_store.local_users(room.room_nid, self.rooms.server_name)

    async def users_sharing_room_with(self, user_id: str) -> set[str]:
        return await self.memberships_store.users_sharing_room_with(user_id)

    async def departed_room_mates(self, user_id: str, since: int, upto: int) -> set[str]:
        """Users who, between event positions ``since`` and ``upto``, stopped sharing any
        room with ``user_id`` (for ``left`` in /keys/changes): they left a room we are in,
        or we left theirs, and no room is shared now."""
        store = self.memberships_store
        mine = await store.changed_since(user_id, since, upto)
        rooms_left = [m.room_nid for m in mine if m.membership in ("leave", "ban")]
        rooms_in = [m.room_nid for m in await store.rooms_for_user(user_id)]
        moves = await self.sync_store.membership_changes(rooms_in + rooms_left, since, upto)
        shared = await store.users_sharing_room_with(user_id)
        left = {m.user_id for m in moves if m.membership in ("leave", "ban")}
        if rooms_left:
            left |= await self.sync_store.joined_users(rooms_left)
        left -= shared
        left.discard(user_id)
        return left

    async def arrived_room_mates(self, user_id: str, since: int, upto: int) -> set[str]:
        """Users who, between event positions ``since`` and ``upto``, started sharing a
        room with ``user_id`` (for ``changed`` in /keys/changes): they joined one of our
        rooms, or we joined theirs."""
        store = self.memberships_store
        rooms_in = [m.room_nid for m in await store.rooms_for_user(user_id, ("join",))]
        moves = await self.sync_store.membership_changes(rooms_in, since, upto)
        arrived = {m.user_id for m in moves if m.membership == "join"}
        mine = await store.changed_since(user_id, since, upto)
        joined_now = [m.room_nid for m in mine if m.membership == "join"]
        if joined_now:
            arrived |= await self.sync_store.joined_users(joined_now)
        arrived.discard(user_id)
        return arrived & await store.users_sharing_room_with(user_id)

    async def servers_sharing_room_with(self, user_id: str) -> set[str]:
        return await self.memberships_store.servers_sharing_room_with(user_id)

    async def servers_in_room(self, room_id: str) -> set[str]:
        room = await self.rooms.rooms.get_room(room_id)
        if room is None:
            return set()
        return await self.memberships_store.joined_servers(room.room_nid)

    def apis(self, auth: Authenticator) -> list[Any]:
        return [
            RoomsApi(auth, self.rooms, self.creator, self.reader, self.aliases),
            MembershipApi(auth, self.memberships, self.reader),
            MessagesApi(auth, self.reader),
            DirectoryApi(auth, self.aliases),
            SyncApi(auth, self.sync),
            LegacySyncApi(auth, LegacySync(self.sync, self.directory, self.reader), self.reader),
            RoomFeaturesApi(auth, self.upgrader, self.directory, self.relations, self.reports),
            SearchApi(auth, self.search, self.user_directory),
            VoipApi(auth, self.config.turn, self.clock),
        ]


def build_rooms_area(
    config: Config, db: Database, clock: Clock, signing_key: SigningKey, accounts: AccountService
) -> RoomsArea:
    rooms_store = RoomStore(db)
    events = EventStore(db)
    state = StateStore(db)
    members = MembershipStore(db)
    notifier = Notifier()
    relations = RelationStore(db)
    search = SearchStore(db)
    persister = EventPersister(db, rooms_store, events, state, members, relations, search)
    rooms = RoomService(
        config.server_name,
        clock,
        signing_key,
        rooms_store,
        events,
        state,
        members,
        persister,
        notifier,
    )

    async def profile(user_id: str) -> dict[str, str]:
        try:
            return await accounts.get_profile(user_id)
        except MatrixError:
            return {}

    memberships = MembershipService(rooms, profile)
    creator = RoomCreator(
        rooms, memberships, config.default_room_version, config.allow_public_room_publishing
    )
    visibility = Visibility(rooms)
    serializer = EventSerializer(events, clock, RelationAggregator(relations, events))
    reader = RoomReader(rooms, visibility, serializer)
    accounts.profile_changed_hooks.append(memberships.profile_changed)
    accounts.deactivated_hooks.append(memberships.deactivated)

    async def is_guest(user_id: str) -> bool:
        user = await accounts.store.get_user(user_id)
        return user is not None and user.is_guest

    async def guest_access_changed(stored: StoredEvent, room: RoomInfo) -> None:
        if stored.event.type == "m.room.guest_access" and stored.event.state_key == "":
            await memberships.remove_guests(room, is_guest)

    rooms.event_persisted_hooks.append(guest_access_changed)
    sync_store = SyncStore(db)
    return RoomsArea(
        rooms=rooms,
        memberships=memberships,
        creator=creator,
        reader=reader,
        aliases=AliasService(rooms, reader),
        sync=SyncBuilder(rooms, visibility, serializer, notifier, sync_store),
        sync_store=sync_store,
        notifier=notifier,
        events=events,
        memberships_store=members,
        upgrader=RoomUpgrader(rooms, memberships),
        directory=RoomDirectory(rooms, config.allow_public_room_publishing),
        relations=RelationsService(reader, relations),
        reports=ReportService(rooms, visibility, ReportStore(db), clock),
        search=SearchService(reader, search),
        user_directory=UserDirectory(UserDirectoryStore(db), events),
        config=config,
        clock=clock,
        serializer=serializer,
    )
