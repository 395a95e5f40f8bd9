"""Typing notifications (spec: client-server "Typing Notifications", server-server "m.typing").

Design note
-----------
Typing state is kept in memory only: who types where, each with a timer
(``loop.call_later``) that stops the typing when its timeout runs out. No
polling loop and no database: a restart forgets everyone's typing, which
is what clients expect within the usual 30 s timeouts anyway.

Every change to a room's list of typing users takes the next position of
an in-process *typing stream*. Positions restart at 0 with the process, so
a sync token carries them together with a per-process ``epoch``:

    token = "<epoch>.<position>"      e.g. "3f9a0c1e.42"

``decode_token`` gives the position back, or ``STALE`` (-1) for a token of
another process (or a malformed one). ``typing_for_rooms`` answers a stale
position with the current list of *every* requested room, empty lists
included, because the client may still show typists the old process knew
about and ``m.typing`` always replaces the client's whole list. An
initial sync (no token) passes 0: rooms whose list changed since start-up.

Hooks: ``change_hooks`` are called synchronously with a ``TypingChange``
for every start, refresh, stop and expiry (the notifier wakes /sync on
``changed``; federation forwards every one as an ``m.typing`` EDU, since
refreshes keep remote timers alive). A failing hook is logged, never
propagated.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.errors import forbidden
from homeserver.rooms.ephemeral.interfaces import IsJoined

log = logging.getLogger("myelin.typing")

STALE = -1
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000


@dataclass(frozen=True, slots=True)
class TypingChange:
    room_id: str
    user_id: str
    typing: bool
    position: int
    changed: bool  # False for a refresh of someone who was already typing


TypingHook = Callable[[TypingChange], None]


class TypingService:
    def __init__(self, is_joined: IsJoined, *, epoch: str | None = None) -> None:
        self.is_joined = is_joined
        self.epoch = epoch or secrets.token_hex(4)
        self.position = 0
        self.change_hooks: list[TypingHook] = []
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        self._room_position: dict[str, int] = {}

    # ------------------------------------------------------------ tokens

    def current_token(self) -> str:
        return self.encode_token(self.position)

    def encode_token(self, position: int) -> str:
        return f"{self.epoch}.{position}"

    def decode_token(self, token: str) -> int:
        """The position in ``token``, or ``STALE`` if it is from another process or malformed."""
        epoch, sep, pos = token.partition(".")
        if not sep or epoch != self.epoch or not pos.isdigit() or not pos.isascii():
            return STALE
        position = int(pos)
        return position if position <= self.position else STALE

    # ------------------------------------------------------------ writes

    async def set_typing(
        self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None:
        """A local client's ``PUT /typing``: the user must be joined to the room."""
        if not await self.is_joined(user_id, room_id):
            raise forbidden("You are not joined to this room")
        self.apply(user_id, room_id, typing, timeout_ms)

    def apply(
        self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None:
        """Record a typing change without checks (federation checks the sender itself;
        the room service calls this with ``typing=False`` when a user leaves)."""
        if typing:
            self._start(user_id, room_id, timeout_ms)
        else:
            self._stop(user_id, room_id, None)

    def _start(self, user_id: str, room_id: str, timeout_ms: int | None) -> None:
        timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms
        timeout = max(0, min(MAX_TIMEOUT_MS, timeout))
        room = self._typing.setdefault(room_id, {})
        old = room.get(user_id)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def expire() -> None:
            self._stop(user_id, room_id, handle)

        handle = loop.call_later(timeout / 1000, expire)
        room[user_id] = handle
        changed = old is None
        if changed:
            self._advance(room_id)
        self._publish(TypingChange(room_id, user_id, True, self.position, changed))

    def _stop(self, user_id: str, room_id: str, expected: asyncio.TimerHandle | None) -> None:
        room = self._typing.get(room_id)
        handle = room.get(user_id) if room else None
        if room is None or handle is None:
            return
        if expected is not None and handle is not expected:
            return  # a newer start replaced the timer that fired
        handle.cancel()
        del room[user_id]
        if not room:
            del self._typing[room_id]
        self._advance(room_id)
        self._publish(TypingChange(room_id, user_id, False, self.position, True))

    def _advance(self, room_id: str) -> None:
        self.position += 1
        self._room_position[room_id] = self.position

    def _publish(self, change: TypingChange) -> None:
        for hook in list(self.change_hooks):
            try:
                hook(change)
            except Exception:
                log.exception("typing hook failed")

    # ------------------------------------------------------------- reads

    def typing_users(self, room_id: str) -> list[str]:
        return sorted(self._typing.get(room_id, ()))

    def typing_for_rooms(
        self, room_ids: Iterable[str], since_pos: int
    ) -> dict[str, dict[str, Any]]:
        """``{room_id: m.typing content}`` for the rooms whose typing list changed
        after ``since_pos`` (every room for ``STALE``), for /sync's ``ephemeral``."""
        out: dict[str, dict[str, Any]] = {}
        for room_id in room_ids:
            if since_pos < 0 or self._room_position.get(room_id, 0) > since_pos:
                out[room_id] = {"user_ids": self.typing_users(room_id)}
        return out

    def close(self) -> None:
        """Cancel every timer (server shutdown)."""
        for room in self._typing.values():
            for handle in room.values():
                handle.cancel()
        self._typing.clear()
