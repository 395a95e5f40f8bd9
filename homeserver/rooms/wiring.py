"""Builds the room area (stores and services) for the composition root.

Kept apart from app.py so the shared file needs only a few lines. The
room services publish "events changed" to the ``ChangeSignal`` they are
given; their HTTP handlers are assembled in ``homeserver/api/assembly.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from homeserver.accounts.service import AccountService
from homeserver.clock import Clock
from homeserver.config import Config
from homeserver.errors import MatrixError
from homeserver.events.keys import SigningKey
from homeserver.identity.client import IdentityClient
from homeserver.rooms.aliases import AliasService
from homeserver.rooms.content_policy import ContentPolicy
from homeserver.rooms.creation import RoomCreator
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.erasure import AccountEraser
from homeserver.rooms.hierarchy import SpaceHierarchy
from homeserver.rooms.invite_protection import InviteProtection
from homeserver.rooms.members import RoomMembers
from homeserver.rooms.membership import MembershipService
from homeserver.rooms.persist import EventPersister
from homeserver.rooms.purge import HistoryPurger
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.relations import RelationAggregator, RelationsService
from homeserver.rooms.reports import ReportService
from homeserver.rooms.retention import RetentionJob
from homeserver.rooms.search import SearchService
from homeserver.rooms.self_destruct import SelfDestruct
from homeserver.rooms.serialize import EventSerializer
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import EventStore, StoredEvent
from homeserver.rooms.store.membership_store import MembershipStore
from homeserver.rooms.store.purge_store import PurgeStore
from homeserver.rooms.store.relations_store import RelationStore
from homeserver.rooms.store.reports_store import ReportStore
from homeserver.rooms.store.rooms_store import RoomInfo, RoomStore
from homeserver.rooms.store.search_store import SearchStore
from homeserver.rooms.store.state_store import StateStore
from homeserver.rooms.store.user_directory_store import UserDirectoryStore
from homeserver.rooms.third_party_invites import ThirdPartyInvites
from homeserver.rooms.timestamp import TimestampLookup
from homeserver.rooms.upgrade import RoomUpgrader
from homeserver.rooms.user_directory import UserDirectory
from homeserver.rooms.visibility import Visibility
from homeserver.storage.database import Database
from homeserver.streams.signal import ChangeSignal

log = logging.getLogger("myelin.rooms")


@dataclass
class RoomsArea:
    rooms: RoomService
    members: RoomMembers
    memberships: MembershipService
    creator: RoomCreator
    reader: RoomReader
    aliases: AliasService
    events: EventStore
    memberships_store: MembershipStore
    upgrader: RoomUpgrader
    directory: RoomDirectory
    relations: RelationsService
    reports: ReportService
    search: SearchService
    user_directory: UserDirectory
    visibility: Visibility
    serializer: EventSerializer
    # Run once at start-up (HomeServer.build, in the background).
    reconcile_guests: Callable[[], Coroutine[Any, Any, None]]
    hierarchy: SpaceHierarchy
    timestamps: TimestampLookup
    # History purges (admin), retention (a background task when enabled).
    purger: HistoryPurger
    retention: RetentionJob
    # Invites by email address through identity servers (createRoom's invite_3pid too).
    third_party: ThirdPartyInvites
    # MSC2228 self-destructing events (None unless configured): a background task.
    self_destruct: SelfDestruct | None


def build_rooms_area(
    config: Config,
    db: Database,
    clock: Clock,
    signing_key: SigningKey,
    accounts: AccountService,
    signal: ChangeSignal,
    content_policy: ContentPolicy | None = None,
) -> RoomsArea:
    rooms_store = RoomStore(db)
    events = EventStore(db, config.caches.events)
    state = StateStore(db, cache_groups=config.caches.state_groups)
    members = MembershipStore(db, config.server_name)
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
        signal,
    )

    async def profile(user_id: str) -> dict[str, str]:
        try:
            return await accounts.get_profile(user_id)
        except MatrixError:
            return {}

    report_store = ReportStore(db)
    rooms.content_policy = content_policy or ContentPolicy.from_config(config.content_policy)

    async def file_report(room_id: str, event_id: str, reason: str) -> None:
        # The reporter of a flag is the server itself (its name, not a user id).
        await report_store.add(
            config.server_name,
            clock.now_ms(),
            room_id=room_id,
            event_id=event_id,
            reason="content policy: " + reason,
        )

    rooms.content_policy.file_report = file_report
    memberships = MembershipService(rooms, profile, InviteProtection(config.invite_protection))
    creator = RoomCreator(
        rooms, memberships, config.default_room_version, config.allow_public_room_publishing
    )
    # Identity servers named by clients: on this host only where federation may go too.
    identity = IdentityClient(config.server_name, signing_key, config.federation.insecure_local)
    third_party = ThirdPartyInvites(rooms, memberships, identity)
    creator.third_party = third_party
    visibility = Visibility(rooms)
    serializer = EventSerializer(events, clock, RelationAggregator(relations, events))
    reader = RoomReader(rooms, visibility, serializer)
    accounts.profile_changed_hooks.append(memberships.profile_changed)
    accounts.deactivated_hooks.append(memberships.deactivated)
    purge_store = PurgeStore(db)
    purger = HistoryPurger(rooms, purge_store, clock)
    accounts.erased_hooks.append(AccountEraser(events, purge_store).erase)

    async def is_guest(user_id: str) -> bool:
        user = await accounts.store.get_user(user_id)
        return user is not None and user.is_guest

    async def guest_access_changed(stored: StoredEvent, room: RoomInfo) -> None:
        if stored.event.type == "m.room.guest_access" and stored.event.state_key == "":
            await memberships.remove_guests(room, is_guest)

    rooms.event_persisted_hooks.append(guest_access_changed)

    async def reconcile_guests() -> None:
        """At start: the hook above runs after the commit, so a crash in between
        leaves guests joined to a room that no longer admits them; the durable
        marker is the room's state itself, so redo it for every such room."""
        for room_nid in await members.rooms_with_joined_guests():
            for room in (await rooms.rooms.rooms_by_nid([room_nid])).values():
                try:
                    await memberships.remove_guests(room, is_guest)
                except Exception:
                    log.exception("could not remove guests from %s", room.room_id)

    directory = RoomDirectory(rooms, config.allow_public_room_publishing)
    self_destruct: SelfDestruct | None = None
    if config.msc2228_self_destructing_events:
        self_destruct = SelfDestruct(db, events, purge_store, clock)
        persister.txn_hooks.append(self_destruct.in_transaction)
    retention = RetentionJob(config.retention, rooms, purger, clock)
    if config.retention.enabled:
        visibility.expired_before = retention.expired_before
    return RoomsArea(
        rooms=rooms,
        members=RoomMembers(rooms),
        memberships=memberships,
        creator=creator,
        reader=reader,
        aliases=AliasService(rooms, reader),
        events=events,
        memberships_store=members,
        upgrader=RoomUpgrader(rooms, memberships),
        directory=directory,
        relations=RelationsService(reader, relations),
        reports=ReportService(rooms, visibility, report_store, clock),
        search=SearchService(reader, search),
        user_directory=UserDirectory(
            UserDirectoryStore(db),
            events,
            search_all_users=config.user_directory.search_all_users,
        ),
        visibility=visibility,
        serializer=serializer,
        reconcile_guests=reconcile_guests,
        hierarchy=SpaceHierarchy(rooms, directory),
        timestamps=TimestampLookup(rooms, visibility),
        purger=purger,
        retention=retention,
        third_party=third_party,
        self_destruct=self_destruct,
    )
