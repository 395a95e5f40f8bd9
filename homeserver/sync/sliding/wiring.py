"""Builds the sliding sync service over /sync's builder and the room services."""

from __future__ import annotations

from homeserver.clock import Clock
from homeserver.rooms.wiring import RoomsArea
from homeserver.storage.database import Database
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.sliding.connections import ConnectionStore
from homeserver.sync.sliding.extensions import SlidingExtensions
from homeserver.sync.sliding.lists import RoomLists
from homeserver.sync.sliding.rooms import RoomBodies
from homeserver.sync.sliding.service import SlidingSync
from homeserver.sync.sliding.store import SlidingStore
from homeserver.sync.user_sections import UserSections


def build_sliding(
    db: Database, rooms_area: RoomsArea, builder: SyncBuilder, clock: Clock
) -> SlidingSync:
    rooms = rooms_area.rooms
    store = SlidingStore(db)
    bodies = RoomBodies(
        rooms, rooms_area.visibility, rooms_area.serializer, builder.store, builder.stripped
    )
    return SlidingSync(
        rooms=rooms,
        builder=builder,
        connections=ConnectionStore(db),
        store=store,
        lists=RoomLists(rooms, store, builder.src.account_data),
        bodies=bodies,
        extensions=SlidingExtensions(builder.src, UserSections(builder.src, rooms.members)),
        clock=clock,
    )
