"""Server admins reading and resolving what users reported (Synapse's event reports API).

A report names what was reported; the admin view adds what the server can
see about it now: the room's name and alias, the event's sender and (for
one report) the event as stored. In an encrypted room that event is
ciphertext: the server cannot show what was said, only who said it and when.
"""

from __future__ import annotations

from typing import Any

from homeserver.errors import not_found
from homeserver.rooms.service import RoomService
from homeserver.rooms.store.reports_store import Report, ReportAdminStore, ReportQuery


class ReportAdmin:
    def __init__(self, rooms: RoomService, store: ReportAdminStore) -> None:
        self.rooms = rooms
        self.store = store

    async def _room_facts(self, room_id: str | None) -> dict[str, Any]:
        facts: dict[str, Any] = {"name": None, "canonical_alias": None}
        room = None if room_id is None else await self.rooms.rooms.get_room(room_id)
        if room is None:
            return facts
        for field, etype, key in (
            ("name", "m.room.name", "name"),
            ("canonical_alias", "m.room.canonical_alias", "alias"),
        ):
            ev = await self.rooms.current_state_event(room, etype)
            value = None if ev is None else ev.event.content.get(key)
            facts[field] = value if isinstance(value, str) else None
        return facts

    async def _shape(self, kind: str, r: Report, with_event: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": r.report_id,
            "received_ts": r.received_ts,
            "user_id": r.reporter,
            "reason": r.reason,
        }
        if kind == "user":
            out["target_user_id"] = r.target_user_id
            return out
        out["room_id"] = r.room_id
        out.update(await self._room_facts(r.room_id))
        if kind == "event":
            out["event_id"] = r.event_id
            out["score"] = r.score
            stored = None if r.event_id is None else await self.rooms.events.by_id(r.event_id)
            out["sender"] = None if stored is None else stored.event.sender
            if with_event:
                out["event_json"] = (
                    None
                    if stored is None
                    else {**stored.event.pdu, "event_id": stored.event.event_id}
                )
        return out

    async def page(self, q: ReportQuery) -> tuple[list[dict[str, Any]], int]:
        reports, total = await self.store.page(q)
        return [await self._shape(q.kind, r) for r in reports], total

    async def get(self, kind: str, report_id: int) -> dict[str, Any]:
        found = await self.store.get(kind, report_id)
        if found is None:
            raise not_found("Report not found")
        return await self._shape(kind, found, with_event=True)

    async def delete(self, kind: str, report_id: int) -> None:
        if not await self.store.delete(kind, report_id):
            raise not_found("Report not found")
