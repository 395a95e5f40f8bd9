"""Events as clients see them (client-server "ClientEvent").

Redactions are applied at the storage layer (``homeserver.rooms.redactions``):
a redacted event is stored pruned, with ``StoredEvent.redacted_by`` naming the
applied redaction, which is served here as ``unsigned.redacted_because``. A
redaction that did not apply (a powerless sender on another server) leaves
the event as it was.

When a reader is known (``user_id``), timeline events also get their
bundled aggregations in ``unsigned."m.relations"`` (see ``relations.py``):
every endpoint that serves timeline events, /sync included, gets them here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Any

from homeserver.clock import Clock
from homeserver.events.redaction import redact
from homeserver.rooms import client_json
from homeserver.rooms.store.events_store import EventStore, StoredEvent

if TYPE_CHECKING:
    from homeserver.rooms.relations import RelationAggregator

_CLIENT_KEYS = ("content", "event_id", "origin_server_ts", "room_id", "sender", "state_key", "type")


class EventSerializer:
    def __init__(
        self, events: EventStore, clock: Clock, aggregator: RelationAggregator | None = None
    ) -> None:
        self.events = events
        self.clock = clock
        self.aggregator = aggregator

    async def serialize(
        self,
        stored: Sequence[StoredEvent],
        *,
        user_id: str | None = None,
        device_id: str | None = None,
        with_room_id: bool = True,
        childless: Collection[str] = (),
    ) -> list[dict[str, Any]]:
        """Client events for ``stored``, with three batched look-ups (no N+1).
        ``childless``: ids of events the caller read to have no relation pointing at
        them (/sync reads that with its events), whose bundle look-up is skipped."""
        if not stored:
            return []
        redacted_by = {s.event.event_id: s.redacted_by for s in stored if s.redacted_by}
        prev_nids = [s.prev_state_event_nid for s in stored if s.prev_state_event_nid is not None]
        related = await self.events.by_nids([*redacted_by.values(), *prev_nids])
        txn_ids: dict[str, str] = {}
        if user_id is not None and device_id is not None:
            own = [s.event.event_id for s in stored if s.event.sender == user_id]
            txn_ids = await self.events.txn_ids_for(user_id, device_id, own)
        now = self.clock.now_ms()
        relations: dict[str, dict[str, Any]] = {}
        if user_id is not None and self.aggregator is not None:
            parents = [s for s in stored if s.event.event_id not in childless]
            if parents:
                relations = await self._relations(parents, user_id, set(redacted_by), with_room_id)
        out = []
        for s in stored:
            unsigned: dict[str, Any] = {"age": max(0, now - s.event.origin_server_ts)}
            if s.event.event_id in txn_ids:
                unsigned["transaction_id"] = txn_ids[s.event.event_id]
            if s.event.event_id in relations:
                unsigned["m.relations"] = relations[s.event.event_id]
            out.append(self._client_event(s, related, unsigned, now, with_room_id))
        return out

    async def client_parts(
        self, stored: Sequence[StoredEvent], *, with_room_id: bool = True
    ) -> list[bytes]:
        """``serialize`` without a reader, each event's JSON apart and encoded once, kept
        on its ``StoredEvent`` (``client_json.py``): a request only appends each event's
        age (``client_json.array`` joins a run of them: a /sync's state, one array per
        room). One batched look-up, as ``serialize``."""
        related, now, heads = await self._heads(stored, with_room_id)
        parts: list[bytes] = []
        for s, kept in zip(stored, heads, strict=True):
            if kept is None:  # redacted: encoded whole, with its redaction's age
                age = max(0, now - s.event.origin_server_ts)
                event = self._client_event(s, related, {"age": age}, now, with_room_id)
                parts.append(client_json.encode(event))
                continue
            # client_json.with_age, inlined: this loop runs once per member of a big room.
            age = now - kept[2]
            parts.append(kept[1] + b"%d}}" % (age if age > 0 else 0))
        return parts

    async def client_heads(
        self, stored: Sequence[StoredEvent], *, with_room_id: bool = True
    ) -> list[tuple[bytes, int] | None]:
        """Each event's head and ``origin_server_ts`` (``client_json.py``), for a caller
        that keeps a whole answer built from them (``state_lists.py``); None for a
        redacted event, whose JSON holds a second age (its redaction's) and is encoded
        per answer (``client_parts``)."""
        _related, _now, heads = await self._heads(stored, with_room_id)
        return [None if kept is None else (kept[1], kept[2]) for kept in heads]

    async def _heads(
        self, stored: Sequence[StoredEvent], with_room_id: bool
    ) -> tuple[dict[int, StoredEvent], int, list[tuple[StoredEvent | None, bytes, int] | None]]:
        """Each event's kept head (made now if missing or stale; None when redacted),
        with the redactions and replaced state events looked up for them in one batch,
        and the time they were made at."""
        if not stored:
            return {}, 0, []
        related = await self.events.by_nids(
            [
                *(s.redacted_by for s in stored if s.redacted_by),
                *(s.prev_state_event_nid for s in stored if s.prev_state_event_nid is not None),
            ]
        )
        now = self.clock.now_ms()
        heads: list[tuple[StoredEvent | None, bytes, int] | None] = []
        for s in stored:
            prev_nid = s.prev_state_event_nid
            prev = None if prev_nid is None else related.get(prev_nid)
            kept = s.client_json.get(with_room_id)
            if kept is None or kept[0] is not prev or s.redacted_by:
                kept = self._client_head(s, related, prev, now, with_room_id)
            heads.append(kept)
        return related, now, heads

    def _client_head(
        self,
        s: StoredEvent,
        related: dict[int, StoredEvent],
        prev: StoredEvent | None,
        now: int,
        with_room_id: bool,
    ) -> tuple[StoredEvent | None, bytes, int] | None:
        """The event's head (``client_json.head``), now kept on it; None for a redacted
        event, which is not kept."""
        if s.redacted_by:
            return None
        event = self._client_event(s, related, {}, now, with_room_id)
        unsigned = event.pop("unsigned")
        kept = (prev, client_json.head(event, unsigned), s.event.origin_server_ts)
        s.client_json[with_room_id] = kept
        return kept

    def _client_event(
        self,
        s: StoredEvent,
        related: dict[int, StoredEvent],
        unsigned: dict[str, Any],
        now: int,
        with_room_id: bool,
    ) -> dict[str, Any]:
        """One client event: ``unsigned`` (given the per-request members) gains what the
        redaction and the replaced state event (in ``related``) say."""
        ev = s.event
        pdu = ev.pdu
        redaction = related.get(s.redacted_by) if s.redacted_by else None
        if s.redacted_by:
            pdu = redact(pdu, ev.room_version)  # already pruned; idempotent
        if redaction is not None:
            unsigned["redacted_because"] = self.one(redaction, now, with_room_id)
            # Not in the spec's schema, but Synapse sets it and Sytest reads it.
            unsigned["redacted_by"] = redaction.event.event_id
        if s.prev_state_event_nid is not None:
            prev = related.get(s.prev_state_event_nid)
            if prev is not None:
                unsigned["replaces_state"] = prev.event.event_id
                unsigned["prev_content"] = prev.event.content
        return self._shape(pdu, ev.event_id, ev.room_id, unsigned, with_room_id)

    async def _relations(
        self, stored: Sequence[StoredEvent], user_id: str, redacted: set[str], with_room_id: bool
    ) -> dict[str, dict[str, Any]]:
        """event id -> its ``m.relations`` (embedded events are served without bundles)."""
        assert self.aggregator is not None
        bundles = await self.aggregator.bundles(stored, user_id, redacted)
        embedded: list[StoredEvent] = []
        for b in bundles.values():
            if b.thread is not None:
                embedded.append(b.thread[0])
            if b.edit is not None:
                embedded.append(b.edit)
        served = await self.serialize(list({e.event_nid: e for e in embedded}.values()))
        by_id = {e["event_id"]: e for e in served}
        if not with_room_id:
            by_id = {k: {f: v for f, v in e.items() if f != "room_id"} for k, e in by_id.items()}
        out: dict[str, dict[str, Any]] = {}
        for event_id, b in bundles.items():
            agg: dict[str, Any] = {}
            if b.thread is not None:
                latest, count, mine = b.thread
                agg["m.thread"] = {
                    "latest_event": by_id[latest.event.event_id],
                    "count": count,
                    "current_user_participated": mine,
                }
            if b.edit is not None:
                agg["m.replace"] = by_id[b.edit.event.event_id]
            if b.references:
                agg["m.reference"] = {"chunk": [{"event_id": r} for r in b.references]}
            out[event_id] = agg
        return out

    def one(self, s: StoredEvent, now: int, with_room_id: bool = True) -> dict[str, Any]:
        """A client event without redaction or prev_content look-ups."""
        unsigned = {"age": max(0, now - s.event.origin_server_ts)}
        return self._shape(s.event.pdu, s.event.event_id, s.event.room_id, unsigned, with_room_id)

    @staticmethod
    def _shape(
        pdu: dict[str, Any],
        event_id: str,
        room_id: str,
        unsigned: dict[str, Any],
        with_room_id: bool,
    ) -> dict[str, Any]:
        out = {k: pdu[k] for k in _CLIENT_KEYS if k in pdu}
        out["event_id"] = event_id
        if with_room_id:
            out["room_id"] = room_id
        else:
            out.pop("room_id", None)
        if "redacts" in pdu:
            out["redacts"] = pdu["redacts"]
        elif pdu.get("type") == "m.room.redaction" and "redacts" in pdu.get("content", {}):
            out["redacts"] = pdu["content"]["redacts"]
        out["unsigned"] = unsigned
        return out


def stripped_state(events: Sequence[StoredEvent]) -> list[dict[str, Any]]:
    """Stripped state events (client-server "Stripped state") for invite/knock previews."""
    return [
        {
            "type": s.event.type,
            "state_key": s.event.state_key or "",
            "content": s.event.content,
            "sender": s.event.sender,
        }
        for s in events
    ]


STRIPPED_STATE_KEYS = [
    ("m.room.create", ""),
    ("m.room.join_rules", ""),
    ("m.room.canonical_alias", ""),
    ("m.room.avatar", ""),
    ("m.room.name", ""),
    ("m.room.encryption", ""),
    ("m.room.topic", ""),
    # Not in the spec's list, which it leaves open ("some or all of"): lets an
    # invitee's server tell whether its guest may accept (Synapse's optional
    # additional prejoin state).
    ("m.room.guest_access", ""),
]
