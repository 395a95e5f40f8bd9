"""Outbound PDUs: who must receive a room event, and the seam to whatever delivers it.

Design note
-----------
``PduSink`` is the seam: ``enqueue_pdu(destinations, pdu)``. In the server
it is ``FederationSender`` (``federation.sender``): the PDU is written to
the per-destination outbox before anything is sent, then delivered in
transactions with back-off and catch-up (DESIGN rule 6).

``OutboundRooms.in_transaction`` is an ``EventPersister.txn_hooks`` entry:
a locally created event is written to the outbox of every other server
with a joined member (plus the target's server of a membership event, e.g.
a kicked user's) INSIDE the transaction that persists the event (DESIGN
rules 3 and 6), the destinations read from ``room_memberships`` in that same
transaction. A crash after the commit therefore loses nothing: the rows are
there and ``FederationSender.start`` resumes them. The sender is only woken
after the commit (the returned callback). An invite's target server is not
a destination here: it already has the invite, countersigned through
``PUT /v2/invite`` before the event was persisted.

Events received over federation are not relayed, except those that arrive
through a handshake (send_join, send_leave, send_knock), which the resident
server must send on: ``relay`` does that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from federation.partial_state_store import PartialStateStore
from homeserver.events.model import Event
from homeserver.rooms.auth.ids import domain_of
from homeserver.rooms.persist import AfterCommit, PersistPlan
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.events_store import StoredEvent
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.storage.database import Queries


class PduSink(Protocol):
    async def enqueue_pdu(self, destinations: Iterable[str], pdu: dict[str, Any]) -> None:
        """Queue ``pdu`` for delivery to each destination (never raises for a peer)."""


class TxnOutbox(Protocol):
    """The persisted outbox as seen from inside a persisting transaction
    (``FederationSender``)."""

    async def enqueue_pdu_in(
        self, q: Queries, destinations: Iterable[str], pdu: dict[str, Any]
    ) -> Callable[[], None] | None: ...

    async def joined_servers_in(self, q: Queries, room_nid: int) -> set[str]: ...


class OutboundRooms:
    def __init__(
        self, server_name: str, rooms: RoomService, sink: PduSink, outbox: TxnOutbox | None = None
    ) -> None:
        self.server_name = server_name
        self.rooms = rooms
        self.sink = sink
        self.outbox = outbox
        # Our events that a resident server relays for us (our send_join's
        # join): not sent again by the hook.
        self.handshaken: set[str] = set()
        # Rooms joined with partial state: their resident's servers_in_room count as
        # in the room until the members are all here (set by FederatedRooms).
        self.partial: PartialStateStore | None = None
        # The servers joined to a room as the last event's transaction read them: a chain
        # of events in one transaction (a createRoom's, a batch of sends) reads them again
        # only after a membership change (each read is a round trip on PostgreSQL).
        self._joined: tuple[Queries, int, frozenset[str]] | None = None

    async def servers_in_room(self, room: RoomInfo) -> set[str]:
        """Servers with a joined member in the room's current state (and, while the
        room's state is partial, those the resident named at our join). One row per
        server: a join handshake asks several times, and a big room's member rows cost
        far more than its servers."""
        joined = await self.rooms.members.joined_servers(room.room_nid)
        return joined | await self._partial_servers(room.room_nid)

    async def _partial_servers(self, room_nid: int, q: Queries | None = None) -> set[str]:
        if self.partial is None:
            return set()
        partial = await self.partial.get(room_nid, q)
        return set() if partial is None else set(partial.servers_in_room)

    def must_send(self, stored: StoredEvent, plan: PersistPlan) -> bool:
        """A local event for the room's other servers: ours (or built here for a
        third-party invite's remote inviter), in the timeline, not a join that the
        resident server relays for us."""
        ev = stored.event
        if ev.event_id in self.handshaken:
            self.handshaken.discard(ev.event_id)
            return False
        ours = domain_of(ev.sender) == self.server_name or plan.built_for_remote_sender
        if not ours or plan.outlier or plan.backfilled:
            return False
        return not (plan.soft_failed or plan.rejected_reason is not None)

    async def in_transaction(
        self, q: Queries, stored: StoredEvent, plan: PersistPlan
    ) -> AfterCommit | None:
        """``EventPersister.txn_hooks``: queue a local event in the outbox, in the
        event's own transaction; wake the sender after the commit."""
        if self.outbox is None or not self.must_send(stored, plan):
            return None
        destinations = set(await self._joined_in(q, stored, plan))
        destinations |= await self._partial_servers(stored.room_nid, q)
        destinations = self._with_target(stored.event, destinations) - {self.server_name}
        if not destinations:
            return None
        wake = await self.outbox.enqueue_pdu_in(q, destinations, stored.event.pdu)
        return None if wake is None else lambda _committed: wake()

    async def _joined_in(
        self, q: Queries, stored: StoredEvent, plan: PersistPlan
    ) -> frozenset[str]:
        """The servers joined to the event's room, inside its transaction ``q``: read
        again unless the event before it in the same transaction read them and nothing
        since can have changed who is joined (a member event, a federation event's
        membership changes or state delta). The hook runs after the event's own rows, so
        a member event's read sees its membership."""
        assert self.outbox is not None
        last = self._joined
        if (
            last is not None
            and last[0] is q
            and last[1] == stored.room_nid
            and stored.event.type != "m.room.member"
            and not plan.member_changes
            and plan.current_delta is None
        ):
            return last[2]
        joined = frozenset(await self.outbox.joined_servers_in(q, stored.room_nid))
        self._joined = (q, stored.room_nid, joined)
        return joined

    @staticmethod
    def _with_target(ev: Event, destinations: set[str]) -> set[str]:
        if ev.type == "m.room.member" and ev.state_key and ev.membership != "invite":
            return destinations | {domain_of(ev.state_key)}
        return destinations

    async def relay(self, stored: StoredEvent, room: RoomInfo, exclude: set[str]) -> None:
        ev = stored.event
        destinations = self._with_target(ev, await self.servers_in_room(room))
        destinations -= exclude | {self.server_name}
        if destinations:
            await self.sink.enqueue_pdu(destinations, ev.pdu)
