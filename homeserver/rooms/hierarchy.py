"""The space hierarchy (client-server "GET /hierarchy", server-server "GET /hierarchy").

Design note
-----------
A client's request walks the space tree depth first from the root, children
in the spec's order (``hierarchy_rules.ordered_children``), down to
``max_depth``, each room once. A room this server is in is summarised from
its current state; a room it is not in is asked of the servers in the
child event's ``via`` over federation (``remote``, bound by the composition
root; None without federation). One remote answer also summarises the
space's children, so leaf rooms cost no further request. The walk is
bounded (rooms and remote requests), and pages are offsets into it: a
``from`` token carries the offset and a digest of the root, ``max_depth``
and ``suggested_only``, which may not change between pages.

Another server's request gets the room, its children this server knows,
and the children that server may not see (``inaccessible_children``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.rooms.directory import RoomDirectory
from homeserver.rooms.hierarchy_rules import (
    SPACE_CHILD,
    allowed_room_ids,
    may_see,
    ordered_children,
)
from homeserver.rooms.service import RoomService

# (servers to ask, room id, suggested_only) -> the federation answer, or None.
RemoteHierarchy = Callable[[list[str], str, bool], Awaitable[dict[str, Any] | None]]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_DEPTH = 20
MAX_ROOMS = 500
MAX_REMOTE_REQUESTS = 20
SPACE = "m.space"


def forbidden_space() -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", "You may not see this space")


def _digest(room_id: str, max_depth: int | None, suggested_only: bool) -> str:
    raw = f"{room_id}|{max_depth}|{suggested_only}".encode()
    return hashlib.sha256(raw).hexdigest()[:12]


def _remote_summary(raw: Any) -> dict[str, Any] | None:
    """A remote room summary with the required fields well formed, or None."""
    if not isinstance(raw, dict) or not isinstance(raw.get("room_id"), str):
        return None
    out = dict(raw)
    if not isinstance(out.get("num_joined_members"), int):
        out["num_joined_members"] = 0
    for key in ("world_readable", "guest_can_join"):
        out[key] = out.get(key) is True
    allowed = out.get("allowed_room_ids")
    if allowed is not None:
        ok = isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)
        out["allowed_room_ids"] = allowed if ok else []
    for key in ("join_rule", "room_type", "name", "topic", "avatar_url", "canonical_alias"):
        if key in out and not isinstance(out[key], str):
            del out[key]
    states = out.get("children_state")
    out["children_state"] = (
        [s for s in states if isinstance(s, dict)] if isinstance(states, list) else []
    )
    return out


class SpaceHierarchy:
    def __init__(self, rooms: RoomService, directory: RoomDirectory) -> None:
        self.rooms = rooms
        self.directory = directory
        # Bound by the composition root when federation is on.
        self.remote: RemoteHierarchy | None = None

    async def local_summary(self, room_id: str) -> dict[str, Any] | None:
        """The summary of a room this server is in, with ``children_state``."""
        info = await self.rooms.rooms.get_room(room_id)
        if info is None or not await self.rooms.members.members(info.room_nid):
            return None
        summary = (await self.directory.summaries([info.room_nid])).get(info.room_nid)
        if summary is None:
            return None
        cur = await self.rooms.current_state(
            info, [("m.room.join_rules", ""), ("m.room.encryption", "")]
        )
        rules = cur.get(("m.room.join_rules", ""))
        content = rules.event.content if rules is not None else {}
        rule = content.get("join_rule")
        summary["join_rule"] = rule if isinstance(rule, str) else "invite"
        if summary["join_rule"] in ("restricted", "knock_restricted"):
            summary["allowed_room_ids"] = allowed_room_ids(content)
        enc = cur.get(("m.room.encryption", ""))
        if enc is not None and isinstance(enc.event.content.get("algorithm"), str):
            summary["encryption"] = enc.event.content["algorithm"]
        summary["room_version"] = info.version.identifier
        summary["children_state"] = []
        if summary.get("room_type") == SPACE:
            nids = await self.rooms.state.current_state_of_type(info.room_nid, SPACE_CHILD)
            events = await self.rooms.events.by_nids(nids.values())
            summary["children_state"] = [
                {
                    "type": s.event.type,
                    "state_key": s.event.state_key,
                    "content": s.event.content,
                    "sender": s.event.sender,
                    "origin_server_ts": s.event.pdu.get("origin_server_ts", 0),
                }
                for s in sorted(events.values(), key=lambda s: s.event.state_key or "")
                if s.event.content.get("via")
            ]
        return summary

    async def _user_may_see(self, user_id: str, summary: dict[str, Any]) -> bool:
        members = self.rooms.members
        info = await self.rooms.rooms.get_room(summary["room_id"])
        membership = None
        if info is not None:
            m = await members.get(info.room_nid, user_id)
            membership = m.membership if m is not None else None
        joined_to_allowed = False
        for allowed in summary.get("allowed_room_ids") or []:
            other = await self.rooms.rooms.get_room(allowed) if isinstance(allowed, str) else None
            m = await members.get(other.room_nid, user_id) if other is not None else None
            if m is not None and m.membership == "join":
                joined_to_allowed = True
                break
        return may_see(summary, membership, joined_to_allowed)

    # ------------------------------------------------------------ client

    async def for_user(
        self,
        user_id: str,
        room_id: str,
        from_token: str | None,
        limit: int,
        max_depth: int | None,
        suggested_only: bool,
    ) -> dict[str, Any]:
        digest = _digest(room_id, max_depth, suggested_only)
        start = 0
        if from_token is not None:
            offset, sep, given = from_token.partition("_")
            if not sep or given != digest or not offset.isdigit() or len(offset) > 6:
                raise invalid_param("Invalid 'from' token, or the query changed since it")
            start = int(offset)
        walked = await self._walk(user_id, room_id, max_depth, suggested_only)
        page = walked[start : start + limit]
        out: dict[str, Any] = {"rooms": page}
        if start + limit < len(walked):
            out["next_batch"] = f"{start + limit}_{digest}"
        return out

    async def _walk(
        self, user_id: str, room_id: str, max_depth: int | None, suggested_only: bool
    ) -> list[dict[str, Any]]:
        stack: list[tuple[str, int, list[str]]] = [(room_id, 0, [])]
        seen: set[str] = set()
        known: dict[str, dict[str, Any]] = {}
        budget = [MAX_REMOTE_REQUESTS]
        out: list[dict[str, Any]] = []
        while stack and len(out) < MAX_ROOMS:
            rid, depth, via = stack.pop()
            if rid in seen:
                continue
            seen.add(rid)
            summary = await self._summary(rid, via, suggested_only, known, budget)
            if summary is None or not await self._user_may_see(user_id, summary):
                if depth == 0:
                    raise forbidden_space()
                continue
            out.append(summary)
            if max_depth is not None and depth >= max_depth:
                continue
            children = ordered_children(summary["children_state"])
            if suggested_only:
                children = [c for c in children if c["content"].get("suggested") is True]
            for child in reversed(children):
                via_servers = [v for v in child["content"]["via"] if isinstance(v, str)]
                stack.append((child["state_key"], depth + 1, via_servers))
        return out

    async def _summary(
        self,
        room_id: str,
        via: list[str],
        suggested_only: bool,
        known: dict[str, dict[str, Any]],
        budget: list[int],
    ) -> dict[str, Any] | None:
        local = await self.local_summary(room_id)
        if local is not None:
            return local
        cached = known.get(room_id)
        if cached is not None and (
            cached.get("room_type") != SPACE or cached.get("children_state")
        ):
            return cached
        if self.remote is None or budget[0] <= 0 or not via:
            return cached
        budget[0] -= 1
        answer = await self.remote(via[:3], room_id, suggested_only)
        if not isinstance(answer, dict):
            return cached
        room = _remote_summary(answer.get("room"))
        if room is None or room["room_id"] != room_id:
            return cached
        children = answer.get("children")
        for raw in children if isinstance(children, list) else []:
            child = _remote_summary(raw)
            if child is not None:
                known.setdefault(child["room_id"], child)
        return room

    # -------------------------------------------------------- federation

    async def _server_may_see(self, origin: str, summary: dict[str, Any]) -> bool:
        """Another server may see a room anyone could peek or try to join (it checks
        restricted rooms' ``allowed_room_ids`` itself), or one it has members in."""
        if summary.get("world_readable") is True or summary.get("join_rule") in (
            "public",
            "knock",
            "restricted",
            "knock_restricted",
        ):
            return True
        info = await self.rooms.rooms.get_room(summary["room_id"])
        return info is not None and origin in await self.rooms.members.joined_servers(info.room_nid)

    async def for_server(self, origin: str, room_id: str, suggested_only: bool) -> dict[str, Any]:
        room = await self.local_summary(room_id)
        if room is None or not await self._server_may_see(origin, room):
            raise not_found("Room does not exist, or the server may not see it")
        children: list[dict[str, Any]] = []
        inaccessible: list[str] = []
        for child in ordered_children(room["children_state"]):
            if suggested_only and child["content"].get("suggested") is not True:
                continue
            summary = await self.local_summary(child["state_key"])
            if summary is None:
                continue
            if await self._server_may_see(origin, summary):
                children.append(summary)
            else:
                inaccessible.append(child["state_key"])
        return {"room": room, "children": children, "inaccessible_children": inaccessible}


def parse_bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value not in ("true", "false"):
        raise invalid_param(f"{name} must be true or false")
    return value == "true"
