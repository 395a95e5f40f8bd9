"""Account data and room tags (spec: "Client Config", "Room Tagging").

Every write takes a position in the ``account_data`` stream inside its
transaction (see ``streams``); /sync calls ``changes_since`` with two
positions. Room tags are the ``m.tag`` room account data, changed with a
read-modify-write in the same transaction, which the stream counter's row
lock keeps safe against a concurrent tag change.

Server-managed types (``m.fully_read``, ``m.push_rules``) are refused from
clients (spec: 405 ``M_BAD_JSON``) and written by their services through
``put_managed``. A service can register a ``providers`` entry so a type
that was never written still reads as its default (the push rules).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, not_found
from homeserver.storage.database import Database, Queries
from homeserver.userdata import streams
from homeserver.userdata.account_data_store import GLOBAL, AccountDataStore

SERVER_MANAGED = frozenset({"m.fully_read", "m.push_rules"})
TAG_TYPE = "m.tag"

ChangeHook = Callable[[str, int], None]
Provider = Callable[[str], Awaitable[dict[str, Any]]]


def refuse_managed(data_type: str) -> None:
    if data_type in SERVER_MANAGED:
        raise MatrixError(405, "M_BAD_JSON", f"Cannot set {data_type} through this API.")


class AccountDataService:
    def __init__(self, db: Database, store: AccountDataStore) -> None:
        self.db = db
        self.store = store
        # (user_id, position) after each committed change: /sync wake-ups.
        self.change_hooks: list[ChangeHook] = []
        # Global types whose default content comes from another service.
        self.providers: dict[str, Provider] = {}

    def _changed(self, user_id: str, pos: int) -> None:
        for hook in self.change_hooks:
            hook(user_id, pos)

    async def get(
        self, user_nid: int, user_id: str, room_id: str | None, data_type: str
    ) -> dict[str, Any]:
        content = await self.store.get(self.db, user_nid, room_id or GLOBAL, data_type)
        if content is None and room_id is None and data_type in self.providers:
            content = await self.providers[data_type](user_id)
        if content is None:
            raise not_found("Account data not found")
        return content

    async def put(
        self,
        user_nid: int,
        user_id: str,
        room_id: str | None,
        data_type: str,
        content: dict[str, Any],
    ) -> int:
        """A client's write; server-managed types are refused with 405."""
        refuse_managed(data_type)
        return await self.put_managed(user_nid, user_id, room_id, data_type, content)

    async def put_managed(
        self,
        user_nid: int,
        user_id: str,
        room_id: str | None,
        data_type: str,
        content: dict[str, Any],
    ) -> int:
        """A write of any type, for services (read markers); returns its position."""
        async with self.db.transaction() as txn:
            pos = await self.put_in(txn, user_nid, room_id, data_type, content)
        self._changed(user_id, pos)
        return pos

    async def put_in(
        self,
        txn: Queries,
        user_nid: int,
        room_id: str | None,
        data_type: str,
        content: dict[str, Any],
        pos: int | None = None,
    ) -> int:
        """Write inside the caller's transaction; the caller runs ``notify`` after commit.

        A caller that read-modify-writes other tables in the same transaction
        takes ``pos`` first with ``streams.next_position`` (the row lock
        serialises it against other writers) and passes it here.
        """
        if pos is None:
            pos = await streams.next_position(txn, streams.ACCOUNT_DATA)
        await self.store.put(txn, user_nid, room_id or GLOBAL, data_type, content, pos)
        return pos

    def notify(self, user_id: str, pos: int) -> None:
        self._changed(user_id, pos)

    # ------------------------------------------------------------------ tags

    async def tags(self, user_nid: int, room_id: str) -> dict[str, Any]:
        content = await self.store.get(self.db, user_nid, room_id, TAG_TYPE)
        tags = (content or {}).get("tags")
        return tags if isinstance(tags, dict) else {}

    async def _edit_tags(
        self,
        user_nid: int,
        user_id: str,
        room_id: str,
        edit: Callable[[dict[str, Any]], bool],
    ) -> None:
        async with self.db.transaction() as txn:
            pos = await streams.next_position(txn, streams.ACCOUNT_DATA)
            content = await self.store.get(txn, user_nid, room_id, TAG_TYPE) or {}
            tags = content.get("tags")
            tags = dict(tags) if isinstance(tags, dict) else {}
            if not edit(tags):
                raise _Unchanged
            await self.store.put(txn, user_nid, room_id, TAG_TYPE, {"tags": tags}, pos)
        self._changed(user_id, pos)

    async def add_tag(
        self, user_nid: int, user_id: str, room_id: str, tag: str, info: dict[str, Any]
    ) -> None:
        def edit(tags: dict[str, Any]) -> bool:
            tags[tag] = info
            return True

        await self._edit_tags(user_nid, user_id, room_id, edit)

    async def remove_tag(self, user_nid: int, user_id: str, room_id: str, tag: str) -> None:
        """Remove ``tag``; removing an absent tag changes nothing and is not an error."""

        def edit(tags: dict[str, Any]) -> bool:
            return tags.pop(tag, None) is not None

        try:
            await self._edit_tags(user_nid, user_id, room_id, edit)
        except _Unchanged:
            return

    # ------------------------------------------------------------------ sync

    async def current_position(self) -> int:
        return await streams.current(self.db, streams.ACCOUNT_DATA)

    async def changes_since(
        self, user_id: str, from_pos: int, to_pos: int, initial: bool | None = None
    ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, dict[str, Any]]]]:
        """(global type -> content, room id -> type -> content) changed in (from, to].

        For an initial sync (``initial``; by default ``from_pos == 0``) provider
        types never written are included with their defaults.
        """
        global_data: dict[str, dict[str, Any]] = {}
        rooms: dict[str, dict[str, dict[str, Any]]] = {}
        # An empty range reads nothing: most incremental syncs (a round trip less).
        changed = await self.store.changed(user_id, from_pos, to_pos) if from_pos < to_pos else []
        for row in changed:
            if row.room_id == GLOBAL:
                global_data[row.type] = row.content
            else:
                rooms.setdefault(row.room_id, {})[row.type] = row.content
        if from_pos == 0 if initial is None else initial:
            for data_type, provider in self.providers.items():
                if data_type not in global_data:
                    global_data[data_type] = await provider(user_id)
        return global_data, rooms


class _Unchanged(Exception):
    """A tag edit that changes nothing: the transaction is rolled back."""
