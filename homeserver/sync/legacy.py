"""The deprecated sync APIs: ``GET /events``, ``GET /initialSync`` and
``GET /rooms/{roomId}/initialSync`` (spec: "Legacy" sync and "Peeking").

Design note
-----------
These are views of /sync, not a second sync engine: each one runs the
/sync builder and reshapes its answer, so they share its stream tokens,
visibility rules, long-poll and guest rules. ``/events`` is an incremental
/sync flattened into one ``chunk`` (room events and room ephemeral events
carry their ``room_id``); its ``from``/``end`` tokens are /sync tokens.
It never touches the to-device inbox: acknowledging to-device messages
belongs to the client's /sync, which would otherwise lose them.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any, Protocol

from homeserver.errors import MatrixError
from homeserver.rooms.filters import EventFilter
from homeserver.rooms.reading import RoomReader
from homeserver.rooms.store.rooms_store import RoomInfo
from homeserver.streams.tokens import StreamToken
from homeserver.sync.builder import SyncBuilder
from homeserver.sync.model import MAX_TIMELINE_LIMIT, SyncRequest

# The chunk of one /events answer: enough for any burst a client polls through.
EVENTS_TIMELINE_LIMIT = MAX_TIMELINE_LIMIT
DEFAULT_INITIAL_SYNC_LIMIT = 10
PUSH_RULES = "m.push_rules"


class RoomDirectory(Protocol):
    async def visibility(self, room_id: str) -> str: ...


def guest_events_forbidden() -> MatrixError:
    return MatrixError(403, "M_GUEST_ACCESS_FORBIDDEN", "Guests must give a room_id to /events")


class LegacySync:
    def __init__(
        self, builder: SyncBuilder, directory: RoomDirectory, reader: RoomReader | None = None
    ) -> None:
        self.builder = builder
        self.directory = directory
        self.reader = reader

    async def events(
        self, base: SyncRequest, from_token: str | None, room_id: str | None
    ) -> dict[str, Any]:
        """``GET /events``: what happened since ``from`` (or from now), long-polling."""
        if base.is_guest and room_id is None:
            raise guest_events_forbidden()
        since = (
            StreamToken.parse(from_token, "from") if from_token else await self.builder.positions()
        )
        if room_id is not None:
            peeked = await self._peekable(base.user_id, room_id)
            if peeked is not None:
                return await self._peek_events(base, peeked, since)
        rooms: dict[str, Any] = {"timeline": {"limit": EVENTS_TIMELINE_LIMIT}}
        if room_id is not None:
            rooms["rooms"] = [room_id]
        req = _with(base, since=since, filter_param=json.dumps({"room": rooms}))
        result = await self.builder.sync(req)
        chunk: list[dict[str, Any]] = []
        for section in ("join", "leave"):
            for rid, body in result["rooms"][section].items():
                chunk += [_in_room(e, rid) for e in body.get("timeline", {}).get("events", [])]
                for key in ("ephemeral", "account_data"):
                    chunk += [{**e, "room_id": rid} for e in body.get(key, {}).get("events", [])]
        for rid, body in result["rooms"]["invite"].items():
            chunk += [
                _in_room(e, rid)
                for e in body["invite_state"]["events"]
                if e.get("type") == "m.room.member" and e.get("state_key") == base.user_id
            ]
        if room_id is None:
            chunk += _legacy_presence(result["presence"]["events"])
            chunk += _global_account_data(result["account_data"]["events"])
        return {"start": since.encode(), "end": result["next_batch"], "chunk": chunk}

    async def _peekable(self, user_id: str, room_id: str) -> RoomInfo | None:
        """The room, if the user is not joined to it and it is world_readable (spec:
        "Peeking": such a room's events may be streamed without joining)."""
        rooms = self.builder.rooms
        room = await rooms.rooms.get_room(room_id)
        if room is None:
            return None
        member = await rooms.members.get(room.room_nid, user_id)
        if member is not None and member.membership == "join":
            return None
        if not await self.builder.timeline.visibility.world_readable(room):
            return None
        return room

    async def _peek_events(
        self, base: SyncRequest, room: RoomInfo, since: StreamToken
    ) -> dict[str, Any]:
        """``GET /events?room_id=`` for a peeked room: its new visible events, and its
        ephemeral news (typing, receipts, its members' presence), waiting for them (the
        room's events, typing and receipts, and its members' presence, wake listeners
        keyed by its id)."""
        rooms = self.builder.rooms
        timeline = self.builder.timeline
        deadline = time.monotonic() + base.timeout_ms / 1000
        with self.builder.notifier.listen(room.room_id) as listener:
            while True:
                now = await self.builder.positions()
                batch = await rooms.events.room_stream(
                    room.room_nid,
                    after=since.events,
                    before=now.events,
                    limit=EVENTS_TIMELINE_LIMIT,
                    backwards=False,
                )
                visible = await timeline.visibility.filter(base.user_id, room, batch)
                extras = await self._peek_ephemeral(base.user_id, room, since, now)
                remaining = deadline - time.monotonic()
                if visible or extras or remaining <= 0 or not await listener.wait(remaining):
                    break
        end = now
        if batch:
            last = batch[-1].stream_ordering
            end = replace(now, events=last if last is not None else now.events)
        events = await timeline.serializer.serialize(visible, user_id=base.user_id)
        return {
            "start": since.encode(),
            "end": replace(end, to_device=since.to_device).encode(),
            "chunk": [_in_room(e, room.room_id) for e in events] + extras,
        }

    async def _peek_ephemeral(
        self, user_id: str, room: RoomInfo, since: StreamToken, now: StreamToken
    ) -> list[dict[str, Any]]:
        """Typing, receipts and the members' presence of a peeked room in (since, now]:
        what a member's /events would carry for the room (spec: "Peeking")."""
        src = self.builder.src
        out: list[dict[str, Any]] = []
        if since.typing:
            typing_since = src.typing.decode_token(since.typing)
            for rid, content in src.typing.typing_for_rooms([room.room_id], typing_since).items():
                out.append({"type": "m.typing", "room_id": rid, "content": content})
        if since.receipts < now.receipts:
            receipts = await src.receipts.receipts_since(
                [room.room_id], since.receipts, user_id, now.receipts
            )
            for rid, content in receipts.items():
                out.append({"type": "m.receipt", "room_id": rid, "content": content})
        if since.presence < now.presence:
            joined = await self.builder.rooms.members.members(room.room_nid, ("join",))
            changes = await src.presence.changes_since(
                since.presence, now.presence, {m.user_id for m in joined}
            )
            out += _legacy_presence(changes)
        return out

    async def initial_sync(self, base: SyncRequest, limit: int, archived: bool) -> dict[str, Any]:
        """``GET /initialSync``: every room of the user with recent messages and state."""
        room_filter = {"timeline": {"limit": max(limit, 1)}, "include_leave": archived}
        result = await self.builder.sync(
            _with(base, filter_param=json.dumps({"room": room_filter}))
        )
        rooms: list[dict[str, Any]] = []
        receipts: list[dict[str, Any]] = []
        for membership in ("join", "leave"):
            for rid, body in result["rooms"][membership].items():
                rooms.append(await self._room(rid, membership, body, result["next_batch"], limit))
                receipts += [
                    {**e, "room_id": rid}
                    for e in body.get("ephemeral", {}).get("events", [])
                    if e.get("type") == "m.receipt"
                ]
        for rid, body in result["rooms"]["invite"].items():
            own = [
                e
                for e in body["invite_state"]["events"]
                if e.get("type") == "m.room.member" and e.get("state_key") == base.user_id
            ]
            entry: dict[str, Any] = {"room_id": rid, "membership": "invite"}
            if own:
                entry["invite"] = _in_room(own[0], rid)
            rooms.append(entry)
        return {
            "end": result["next_batch"],
            "rooms": rooms,
            "presence": _legacy_presence(result["presence"]["events"]),
            "account_data": _global_account_data(result["account_data"]["events"]),
            "receipts": receipts,
        }

    async def room_initial_sync(
        self, base: SyncRequest, room_id: str, limit: int
    ) -> dict[str, Any]:
        """``GET /rooms/{roomId}/initialSync``: one room's recent messages, state and presence."""
        room_filter = {
            "rooms": [room_id],
            "timeline": {"limit": max(limit, 1)},
            "include_leave": True,
        }
        result = await self.builder.sync(
            _with(base, filter_param=json.dumps({"room": room_filter}))
        )
        for membership in ("join", "leave"):
            body = result["rooms"][membership].get(room_id)
            if body is not None:
                out = await self._room(room_id, membership, body, result["next_batch"], limit)
                members = {
                    e["state_key"]
                    for e in out["state"]
                    if e["type"] == "m.room.member"
                    and e.get("content", {}).get("membership") == "join"
                }
                known = {
                    e.get("sender"): e
                    for e in _legacy_presence(result["presence"]["events"])
                    if e.get("sender") in members
                }
                out["receipts"] = (
                    []
                    if membership == "leave"
                    else [
                        {**e, "room_id": room_id}
                        for e in body.get("ephemeral", {}).get("events", [])
                        if e.get("type") == "m.receipt"
                    ]
                )
                # Members without presence are offline, the state every user starts in.
                # A user who left sees no presence nor receipts (they are for members).
                out["presence"] = (
                    []
                    if membership == "leave"
                    else [
                        known.get(u) or {"type": "m.presence", "sender": u, "content": _offline(u)}
                        for u in sorted(members)
                    ]
                )
                return out
        return await self._peek(base, room_id, limit)

    async def _peek(self, base: SyncRequest, room_id: str, limit: int) -> dict[str, Any]:
        """A non-member's view of a world-readable room (spec: "Peeking"): recent
        messages and current state through the room reader, which enforces history
        visibility (403 for any other room)."""
        if self.reader is None:
            raise MatrixError(403, "M_FORBIDDEN", "You are not a member of this room")
        page = await self.reader.messages(
            base.user_id,
            base.device_id,
            room_id,
            from_token=None,
            to_token=None,
            backwards=True,
            limit=max(limit, 1),
            flt=EventFilter(),
        )
        chunk = [_in_room(e, room_id) for e in reversed(page["chunk"])] if limit > 0 else []
        state = [_in_room(e, room_id) for e in await self.reader.state(base.user_id, room_id)]
        return {
            "room_id": room_id,
            "membership": "leave",
            "messages": {
                "chunk": chunk,
                "start": page.get("end", page["start"]),
                "end": page["start"],
            },
            "state": state,
            "visibility": await self.directory.visibility(room_id),
            "account_data": [],
            "presence": [],
            "receipts": [],
        }

    async def _room(
        self, room_id: str, membership: str, body: dict[str, Any], end: str, limit: int
    ) -> dict[str, Any]:
        timeline = body.get("timeline", {})
        events = [_in_room(e, room_id) for e in timeline.get("events", [])]
        state: dict[tuple[str, str], dict[str, Any]] = {}
        for e in [_in_room(e, room_id) for e in body.get("state", {}).get("events", [])] + events:
            if "state_key" in e:
                state[(e["type"], e["state_key"])] = e
        messages = {
            "chunk": events if limit > 0 else [],
            "start": timeline.get("prev_batch") or end,
            "end": end,
        }
        return {
            "room_id": room_id,
            "membership": membership,
            "messages": messages,
            "state": list(state.values()),
            "visibility": await self.directory.visibility(room_id),
            "account_data": body.get("account_data", {}).get("events", []),
        }


def _in_room(event: dict[str, Any], room_id: str) -> dict[str, Any]:
    """A room event in the legacy shape: its ``room_id``, and ``user_id`` (the sender)."""
    out = {**event, "room_id": room_id}
    if "sender" in event:
        out["user_id"] = event["sender"]
    return out


def _offline(user_id: str) -> dict[str, Any]:
    return {"presence": "offline", "user_id": user_id}


def _legacy_presence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Presence in the legacy shape: the user id is also in ``content.user_id``."""
    return [{**e, "content": {**e.get("content", {}), "user_id": e.get("sender")}} for e in events]


def _global_account_data(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The user's own account data: push rules are /sync's addition, not account data here."""
    return [e for e in events if e.get("type") != PUSH_RULES]


def _with(base: SyncRequest, **changes: Any) -> SyncRequest:
    """``base`` as an initial sync (or incremental from ``since``), without to-device."""
    return replace(base, **{"since": None, "full_state": False, "to_device": False, **changes})
