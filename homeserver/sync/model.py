"""The inputs of one /sync: the request, the services it reads, and the positions
it reads them between (``since`` from the client's token, ``now`` read once at
the start, so every section describes the same moment)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from homeserver.e2ee.keys import KeysService
from homeserver.e2ee.to_device import ToDeviceService
from homeserver.push.notifications import NotificationService
from homeserver.rooms.ephemeral.receipts import ReceiptService
from homeserver.rooms.ephemeral.typing import TypingService
from homeserver.rooms.store.membership_store import Membership
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.streams.tokens import StreamToken
from homeserver.sync.peeks import Peek, PeekStore
from homeserver.sync.store import NewEvent, UserMemberships
from homeserver.userdata.account_data import AccountDataService
from homeserver.userdata.filtering import DEFAULT_FILTER, Filter
from homeserver.userdata.filters import FilterService
from homeserver.userdata.presence import PresenceService

DEFAULT_TIMELINE_LIMIT = 10
MAX_TIMELINE_LIMIT = 100
SET_PRESENCE = ("online", "offline", "unavailable")


@dataclass(frozen=True)
class SyncRequest:
    user_id: str
    device_id: str
    user_nid: int = 0
    is_guest: bool = False
    since: StreamToken | None = None
    timeout_ms: int = 0
    full_state: bool = False
    filter_param: str | None = None
    set_presence: str = "online"
    # False for the legacy /events and /initialSync views: they must not acknowledge
    # (and so delete) to-device messages that the device's /sync has not seen.
    to_device: bool = True
    # True when the answer goes straight to the wire (GET /sync): the rooms' state
    # events may then be pre-encoded JSON (``client_json.Encoded``, encoded once per
    # event: homeserver/rooms/client_json.py) rather than dicts.
    encoded_state: bool = False


class PartialStateRooms(Protocol):
    """Rooms joined over federation with partial state (their members omitted), as the
    federation side records them (``federation.partial_state_store``). A sync that does
    not lazy-load members leaves them out until their state is whole, then sends them
    as newly joined (as Synapse does): such a client takes the member list from the
    sync's state, and the members merged later are never sent as changes."""

    async def partial_among(self, room_nids: Collection[int]) -> set[int]:
        """Which of these rooms (each with a local member joined) are partial now."""
        ...

    async def completed_between(self, since: int, upto: int) -> set[int]:
        """Rooms whose whole state arrived in events positions (since, upto]."""
        ...

    async def partial_at(self, positions: dict[int, int]) -> set[int]:
        """Which rooms were partial at their events position (room nid -> position)."""
        ...


@dataclass
class SyncSources:
    """The per-user and ephemeral services /sync reads (wired by the composition root)."""

    typing: TypingService
    receipts: ReceiptService
    account_data: AccountDataService
    presence: PresenceService
    filters: FilterService
    keys: KeysService
    to_device: ToDeviceService
    notifications: NotificationService
    users_sharing_room_with: Callable[[str], Awaitable[set[str]]]
    # MSC2753 peeks of a device (None: no peeking).
    peeks: PeekStore | None = None
    # Partial-state rooms (None: no federation, so none); bound by the composition root.
    partial_state: PartialStateRooms | None = None


@dataclass
class SyncContext:
    """One build of a /sync answer."""

    req: SyncRequest
    flt: Filter = DEFAULT_FILTER
    since: StreamToken | None = None
    now: StreamToken = field(default_factory=StreamToken)
    joined: dict[int, RoomInfo] = field(default_factory=dict)
    changed: list[Membership] = field(default_factory=list)
    left_nids: set[int] = field(default_factory=set)
    # Joined rooms whose partial state became whole since the token, sent as newly
    # joined to a client that does not lazy-load members (it has not had them yet).
    completed: set[int] = field(default_factory=set)
    infos: dict[int, RoomInfo] = field(default_factory=dict)
    # The user's own membership in the rooms of ``joined`` (read once, used per room).
    own_memberships: dict[int, Membership] = field(default_factory=dict)
    # Users in the user's m.ignored_user_list: their messages and invites are left out.
    ignored: frozenset[str] = frozenset()
    # Whether ``ignored`` was read (a build with no new event skips it; see builder).
    ignored_read: bool = False
    # Membership changes in (since, now] of the joined and left rooms, read once for
    # presence and device lists (``UserSections.member_moves``).
    member_moves: list[Membership] | None = None
    # The device's peeks when the request has just read them (the first build of a
    # long-poll reuses them: one statement less); None: read them.
    device_peeks: list[Peek] | None = None
    # The to-device stream's head when read with ``now`` (None: unknown, read the inbox).
    to_device_head: int | None = None
    # The device's (one-time key counts, unused fallback key types) when read with
    # ``now`` (``SyncStore.sync_heads``); None: read them.
    key_counts: tuple[dict[str, int], list[str]] | None = None
    # The newest events position at which a partial-state room became whole, when read
    # with ``now`` (``SyncStore.sync_heads``); None: unknown, ask the partial-state store.
    completed_head: int | None = None
    # An incremental sync's memberships (with the new events) when read with ``now``
    # (``SyncStore.sync_heads_and_memberships``); None: read them.
    memberships_read: UserMemberships | None = None
    # An initial sync's joins, invites and knocks when read with ``now``
    # (``SyncStore.sync_heads_and_rooms``); None: read them.
    rooms_read: list[Membership] | None = None
    # An incremental sync's new events in its rooms, read with the memberships
    # (``SyncStore.user_memberships``); or an initial sync's joined rooms' newest events,
    # read with the rooms (``SyncStore.sync_heads_and_rooms``) when
    # ``initial_events_read``.
    new_event_rows: list[NewEvent] = field(default_factory=list)
    initial_events_read: bool = False
    # An initial sync's unread counts (without threads) of its joined rooms, when read
    # exact with its rooms (``SyncStore.sync_heads_and_rooms``); None: read them.
    initial_counts: dict[int, tuple[int, int]] | None = None
    # Ids of new events that no relation points at, read with them: their bundled
    # aggregations are not looked up.
    childless: set[str] = field(default_factory=set)

    @property
    def user_id(self) -> str:
        return self.req.user_id

    @property
    def since_events(self) -> int | None:
        return None if self.since is None else self.since.events

    @property
    def limit(self) -> int:
        return timeline_limit(self.flt)


def timeline_limit(flt: Filter) -> int:
    """The room timeline limit a filter asks for, within bounds."""
    limit = flt.room.timeline.limit
    return DEFAULT_TIMELINE_LIMIT if limit is None else max(0, min(limit, MAX_TIMELINE_LIMIT))
