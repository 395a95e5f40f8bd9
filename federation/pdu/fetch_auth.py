"""Step 4's prerequisite: every auth event of an incoming event is known.

Missing auth events are fetched with ``/event_auth`` (the whole auth chain of
the event, from the server that sent it), else one by one with ``/event``,
and stored as outliers oldest first, each checked against its own auth
events (an auth event that fails is stored rejected, so it is never used
again and never refetched).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Set

from nacl.signing import VerifyKey

from federation.errors import KeyLookupError
from federation.keyring import Keyring
from federation.pdu.fetch import EventFetcher
from federation.pdu.graph import RoomGraph
from homeserver.events.model import Event
from homeserver.rooms.auth.constants import CREATE
from homeserver.rooms.checks import EventRejected, check_event
from homeserver.rooms.persist import NewRoom, PersistPlan
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo

MAX_SINGLE_FETCHES = 20
# Outliers written per transaction (store_outliers_locked).
OUTLIERS_PER_TXN = 500

KeyLookup = Callable[[str, str], Awaitable[VerifyKey | None]]


def key_lookup(keyring: Keyring) -> KeyLookup:
    """The keyring as ``checks.check_event`` reads keys (validity was checked on receipt)."""

    async def lookup(server: str, key_id: str) -> VerifyKey | None:
        try:
            return await keyring.get_verify_key(server, key_id, 0)
        except KeyLookupError:
            return None

    return lookup


class _Budget:
    """Requests left for fetching one event's missing auth events."""

    def __init__(self, requests: int) -> None:
        self.left = requests

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


class AuthFetcher:
    def __init__(
        self, rooms: RoomService, graph: RoomGraph, fetcher: EventFetcher, keyring: Keyring
    ) -> None:
        self.rooms = rooms
        self.graph = graph
        self.fetcher = fetcher
        self.keys = key_lookup(keyring)

    async def create_event(self, room: RoomInfo, among: Iterable[Event] = ()) -> Event | None:
        """The room's create event: v12 names it by the room id; older versions cite it."""
        for e in among:
            if e.type == CREATE:
                return e
        if room.version.room_id_from_create_event:
            stored = await self.rooms.events.by_id("$" + room.room_id[1:])
            return None if stored is None else stored.event
        found = await self.rooms.current_state_event(room, CREATE)
        return None if found is None else found.event

    async def ensure(
        self,
        origin: str,
        room: RoomInfo,
        event: Event,
        pending: Set[str] = frozenset(),
        budget: _Budget | None = None,
    ) -> bool:
        """Fetch and store the missing auth events of ``event``; whether all are now known.

        ``pending``: events already fetched and about to be processed (missing prev
        events), which are not asked for again. At most ``MAX_SINGLE_FETCHES`` requests
        in all for one incoming event, however deep the chain a server makes us walk (it
        could refuse ``/event_auth`` and hand out a thousand-long chain one ``/event`` at
        a time)."""
        missing = set(await self.graph.missing(event.auth_event_ids)) - pending
        if not missing:
            return True
        budget = budget or _Budget(MAX_SINGLE_FETCHES)
        if not budget.take():
            return False
        chain = await self.fetcher.event_auth(origin, room.room_id, event.event_id, room.version)
        # An event is never in its own auth chain: a hostile answer that says so is ignored.
        await self.store_outliers(room, [e for e in chain if e.event_id != event.event_id])
        for event_id in await self.graph.missing(event.auth_event_ids):
            if not budget.take():
                break
            got = await self.fetcher.event(origin, event_id, room.version)
            # Stored only with its own auth events: one we gave up on is not rejected
            # for good, it stays missing (another server may yet supply its chain).
            if got is not None and await self.ensure(origin, room, got, budget=budget):
                await self.store_outliers(room, [got])
        return not await self.graph.missing(event.auth_event_ids)

    async def store_outliers(self, room: RoomInfo, events: Iterable[Event]) -> list[StoredEvent]:
        """Store unknown events as outliers, oldest first, each checked against its
        own auth events. Called with what the network gave, outside the room's lock:
        takes it for the writes only (the room keeps a single writer). The events are
        what ``EventFetcher`` handed on: steps 1-3 (format, signatures, hashes) ran on
        receipt and are not run again (a partial-state resync stores thousands)."""
        unknown = list(events)
        if not unknown:
            return []
        async with self.rooms.lock(room.room_id):
            return await self.store_outliers_locked(room, unknown)

    async def store_outliers_locked(
        self, room: RoomInfo | NewRoom, events: Iterable[Event]
    ) -> list[StoredEvent]:
        """``store_outliers`` for a caller that holds the room's lock. The events are
        checked first, in memory (an auth event stored in the same batch counts as
        known), then written ``OUTLIERS_PER_TXN`` to a transaction: a big room's state
        is thousands of outliers, and a commit each was most of storing them.
        ``NewRoom``: a room not stored yet (a first join), whose row is written with
        the first batch; nothing is stored unless ``events`` hold its create event."""
        unknown = {e.event_id: e for e in events}
        known = await self.rooms.events.by_ids(unknown)
        todo = sorted(
            (e for i, e in unknown.items() if i not in known),
            key=lambda e: (e.depth, e.type != CREATE),
        )
        if not todo:
            return []
        if isinstance(room, NewRoom):
            create = next((e for e in todo if e.type == CREATE), None)
            if create is None:
                return []  # no room is made without its create event
        else:
            create = await self.create_event(room, todo)
        batch = {e.event_id for e in todo}
        cited = {a for e in todo for a in e.auth_event_ids if a not in batch}
        stored_auth = await self.rooms.events.by_ids(cited)
        # Every auth event the batch may read: (event, rejected), stored or of the batch.
        seen: dict[str, tuple[Event, bool]] = {
            i: (s.event, s.rejected_reason is not None) for i, s in stored_auth.items()
        }
        plans: list[PersistPlan] = []
        for e in todo:
            reason = await self._check_alone(e, create, seen)
            seen[e.event_id] = (e, reason is not None)
            plans.append(
                PersistPlan(
                    event=e,
                    prev_nids=[],
                    state_group_before=None,
                    replaces_nid=None,
                    outlier=True,
                    rejected_reason=reason,
                )
            )
        out: list[StoredEvent] = []
        persister = self.rooms.persister
        new_room = room if isinstance(room, NewRoom) else None
        room_nid = None if isinstance(room, NewRoom) else room.room_nid
        for start in range(0, len(plans), OUTLIERS_PER_TXN):
            chunk = plans[start : start + OUTLIERS_PER_TXN]
            written = await persister.persist_outliers(chunk, room_nid, new_room)
            room_nid, new_room = written[0].room_nid, None
            out += written
        return out

    async def _check_alone(
        self, event: Event, create: Event | None, seen: Mapping[str, tuple[Event, bool]]
    ) -> str | None:
        """Step 4 for an outlier (1-3 ran on receipt): its own auth events only, from
        ``seen`` (stored ones and those of the batch before it). The rejection reason,
        if any."""
        cited = dict.fromkeys(event.auth_event_ids)
        if any(i not in seen for i in cited):
            return "missing auth events"
        auth = [seen[i][0] for i in cited]
        rejected = {i for i in cited if seen[i][1]}
        by_key = {a.state_tuple(): a for a in auth}
        try:
            await check_event(
                event,
                auth_events=auth,
                state_before=by_key,
                current_state=by_key,
                create_event=None if event.type == CREATE else create,
                keys=self.keys,
                rejected_event_ids=rejected,
                receipt_checked=True,
            )
        except EventRejected as e:
            return f"{e.step}: {e.reason}"
        return None
