"""Sliding sync extensions (MSC3885 to_device, MSC3884 e2ee, MSC3959 account_data,
MSC3960 receipts, MSC3961 typing), as MSC4186 carries them.

Each reads its stream between the position's token and the answer's (the
same streams /sync reads, through the same services). The per-room ones
cover the rooms of the lists and subscriptions they name (all by default)
that the user is joined to. A room sent ``initial`` in this answer gets all
its receipts and its current typing list, since the client knows nothing
of it yet. to_device keeps its own token (``since``/``next_batch``), which
acknowledges (deletes) what the device received, as /sync's does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from homeserver.rooms.ephemeral.typing import STALE
from homeserver.sync.model import SyncContext, SyncSources
from homeserver.sync.sliding.request import ExtensionConfig, Extensions
from homeserver.sync.user_sections import UserSections


@dataclass
class ExtensionScope:
    """What the extensions read: the rooms of each list window, the subscriptions,
    the joined rooms among them, and which were sent initial."""

    windows: dict[str, list[str]]
    subscriptions: Sequence[str]
    joined: set[str]
    initial: set[str] = field(default_factory=set)

    def rooms_for(self, cfg: ExtensionConfig) -> list[str]:
        names = self.windows.keys() if cfg.lists is None or "*" in cfg.lists else cfg.lists
        out: dict[str, None] = {}
        for name in names:
            for room_id in self.windows.get(name, []):
                out.setdefault(room_id)
        subs = self.subscriptions if cfg.rooms is None or "*" in cfg.rooms else cfg.rooms
        for room_id in subs:
            if room_id in self.subscriptions:
                out.setdefault(room_id)
        return [r for r in out if r in self.joined]


class SlidingExtensions:
    def __init__(self, sources: SyncSources, user: UserSections) -> None:
        self.src = sources
        self.user = user

    async def build(
        self, ctx: SyncContext, ext: Extensions, scope: ExtensionScope
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if ext.to_device.enabled:
            out["to_device"] = await self._to_device(ctx, ext)
        if ext.e2ee.enabled:
            out["e2ee"] = await self._e2ee(ctx)
        if ext.account_data.enabled:
            out["account_data"] = await self._account_data(ctx, scope.rooms_for(ext.account_data))
        if ext.receipts.enabled:
            out["receipts"] = await self._receipts(ctx, scope, scope.rooms_for(ext.receipts))
        if ext.typing.enabled:
            out["typing"] = self._typing(ctx, scope, scope.rooms_for(ext.typing))
        return out

    async def _to_device(self, ctx: SyncContext, ext: Extensions) -> dict[str, Any]:
        td = self.src.to_device
        since = ext.to_device_since or 0
        await td.ack_to_device(ctx.user_id, ctx.req.device_id, since)
        events, next_pos = await td.to_device_for(
            ctx.user_id, ctx.req.device_id, since, ext.to_device_limit
        )
        return {"next_batch": str(next_pos), "events": events}

    async def _e2ee(self, ctx: SyncContext) -> dict[str, Any]:
        return {
            "device_lists": await self.user.device_lists(ctx),
            **(await self.user.key_counts(ctx)),
        }

    async def _account_data(self, ctx: SyncContext, room_ids: list[str]) -> dict[str, Any]:
        since = ctx.since.account_data if ctx.since is not None else 0
        global_data, rooms = await self.src.account_data.changes_since(
            ctx.user_id, since, ctx.now.account_data, initial=ctx.since is None
        )
        wanted = set(room_ids)
        return {
            "global": [{"type": t, "content": c} for t, c in global_data.items()],
            "rooms": {
                room_id: [{"type": t, "content": c} for t, c in data.items()]
                for room_id, data in rooms.items()
                if room_id in wanted and data
            },
        }

    async def _receipts(
        self, ctx: SyncContext, scope: ExtensionScope, room_ids: list[str]
    ) -> dict[str, Any]:
        receipts = self.src.receipts
        since = ctx.since.receipts if ctx.since is not None else 0
        fresh = [r for r in room_ids if r in scope.initial]
        rest = [r for r in room_ids if r not in scope.initial]
        found = await receipts.receipts_since(rest, since, ctx.user_id, ctx.now.receipts)
        if fresh:
            found.update(await receipts.receipts_since(fresh, 0, ctx.user_id, ctx.now.receipts))
        return {
            "rooms": {
                room_id: {"type": "m.receipt", "content": content}
                for room_id, content in found.items()
            }
        }

    def _typing(
        self, ctx: SyncContext, scope: ExtensionScope, room_ids: list[str]
    ) -> dict[str, Any]:
        typing = self.src.typing
        since = 0
        if ctx.since is not None:
            since = typing.decode_token(ctx.since.typing) if ctx.since.typing else STALE
        fresh = [r for r in room_ids if r in scope.initial]
        rest = [r for r in room_ids if r not in scope.initial]
        found = typing.typing_for_rooms(rest, since)
        found.update(typing.typing_for_rooms(fresh, STALE))
        return {
            "rooms": {
                room_id: {"type": "m.typing", "content": content}
                for room_id, content in found.items()
                if content["user_ids"] or room_id not in scope.initial
            }
        }


def is_empty(ext: dict[str, Any]) -> bool:
    """Nothing a waiting client needs to hear about (key counts alone do not count)."""
    if ext.get("to_device", {}).get("events"):
        return False
    lists = ext.get("e2ee", {}).get("device_lists", {})
    if lists.get("changed") or lists.get("left"):
        return False
    if ext.get("account_data", {}).get("global") or ext.get("account_data", {}).get("rooms"):
        return False
    return not (ext.get("receipts", {}).get("rooms") or ext.get("typing", {}).get("rooms"))
