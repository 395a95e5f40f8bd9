"""What processes over one PostgreSQL share beyond /sync wake-ups and the caches that
``HomeServer.connect_signal_bus`` connects: typing (every process applies every change,
``rooms/ephemeral/typing_shared.py``), the room cache after a purge, and the ephemeral
events (receipts, presence) that application services get: a worker hands them to the
main process, whose senders alone run. Presence itself needs nothing more: it is in the
database, and a change wakes /sync on every process through the notifier's relay.
Federation EDUs need nothing more either: a worker queues them in the database outbox,
which it announces to the main process.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from homeserver.appservices.service import AppServices
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.ephemeral.typing_shared import SharedTyping
from homeserver.rooms.store.rooms_store import ROOMS_CACHE, RoomStore
from homeserver.storage.database import Database
from homeserver.streams.pg_bus import PgSignalBus

log = logging.getLogger("myelin.cross_process")

# The bus topic on which workers hand ephemeral events to the main process's
# application-service senders (keys: the events as JSON).
APP_SERVICE_EPHEMERAL: Final = "appservice_ephemeral"


def share_across_processes(
    bus: PgSignalBus,
    db: Database,
    typing: TypingService,
    rooms: RoomStore,
    app_services: AppServices,
    main: bool,
) -> SharedTyping:
    """Subscribe before the bus starts; call ``start`` on the result once it listens."""
    rooms.publish = bus.publish
    bus.subscribe(ROOMS_CACHE, rooms.drop_cached)
    if main:

        def on_ephemeral(edus: list[str] | None) -> None:
            # None: some were missed while disconnected; ephemeral events are not
            # replayed (as for a /sync client that misses them).
            for text in edus or ():
                try:
                    edu: Any = json.loads(text)
                except ValueError:
                    continue
                if isinstance(edu, dict):
                    app_services.queue_ephemeral(edu)

        bus.subscribe(APP_SERVICE_EPHEMERAL, on_ephemeral)
    else:
        app_services.forward_ephemeral = lambda edu: bus.publish(
            APP_SERVICE_EPHEMERAL, [json.dumps(edu, separators=(",", ":"))]
        )
    return SharedTyping(db, bus, typing)
