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

Several processes (``share`` set, see ``typing_shared.py``): a change is not
applied where it is taken but sent to every process, which apply it with a
position handed out by PostgreSQL (``apply_shared``); all processes then hold
the same lists at the same positions under one epoch, so a token from any
process is valid on every other. Only the process that took a start expires
it; the others keep a backup timer ``BACKUP_GRACE_MS`` later in case it died.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from homeserver.errors import forbidden
from homeserver.rooms.ephemeral.interfaces import IsJoined

log = logging.getLogger("myelin.typing")

STALE = -1
DEFAULT_TIMEOUT_MS = 30_000
MAX_TIMEOUT_MS = 120_000
# Processes that did not take a start stop it this much after the taker should have.
BACKUP_GRACE_MS = 5_000


@dataclass(frozen=True, slots=True)
class TypingChange:
    room_id: str
    user_id: str
    typing: bool
    position: int
    changed: bool  # False for a refresh of someone who was already typing
    # False where another process took the change (federation sends only the taker's).
    taken_here: bool = True
    # True when every process applies this change itself (no cross-process wake needed).
    shared: bool = False


TypingHook = Callable[[TypingChange], None]
# (user_id, room_id, typing, timeout_ms): send a change to every process (typing_shared).
ShareTyping = Callable[[str, str, bool, int | None], Awaitable[None]]


class TypingService:
    def __init__(self, is_joined: IsJoined, *, epoch: str | None = None) -> None:
        self.is_joined = is_joined
        self.epoch = epoch or secrets.token_hex(4)
        self.position = 0
        self.change_hooks: list[TypingHook] = []
        self._typing: dict[str, dict[str, asyncio.TimerHandle]] = {}
        self._room_position: dict[str, int] = {}
        # Set when several processes share typing (typing_shared.SharedTyping).
        self.share: ShareTyping | None = None
        self._tasks: set[asyncio.Task[None]] = set()

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
        if self.share is not None:
            await self.share(user_id, room_id, typing, timeout_ms)
            return
        self.apply(user_id, room_id, typing, timeout_ms)

    def apply(
        self, user_id: str, room_id: str, typing: bool, timeout_ms: int | None = None
    ) -> None:
        """Record a typing change without checks (federation checks the sender itself;
        the room service calls this with ``typing=False`` when a user leaves)."""
        if self.share is not None:
            self._spawn(self.share(user_id, room_id, typing, timeout_ms))
            return
        if typing:
            self._start(user_id, room_id, timeout_ms)
        else:
            self._stop(user_id, room_id, None)

    def apply_shared(
        self,
        position: int,
        user_id: str,
        room_id: str,
        typing: bool,
        timeout_ms: int | None,
        taken_here: bool,
    ) -> None:
        """A change sent to every process, at its shared ``position``; the ones at or
        below the current position were applied already (or predate this process)."""
        if position <= self.position:
            return
        if typing:
            self._start(user_id, room_id, timeout_ms, position, taken_here)
        else:
            self._stop(user_id, room_id, None, position, taken_here)

    def known_typing(self) -> list[tuple[str, str]]:
        """Every (user, room) this process believes is typing."""
        return [(u, r) for r, users in self._typing.items() for u in users]

    def _start(
        self,
        user_id: str,
        room_id: str,
        timeout_ms: int | None,
        position: int | None = None,
        taken_here: bool = True,
    ) -> None:
        timeout = DEFAULT_TIMEOUT_MS if timeout_ms is None else timeout_ms
        timeout = max(0, min(MAX_TIMEOUT_MS, timeout))
        if not taken_here:
            timeout += BACKUP_GRACE_MS
        room = self._typing.setdefault(room_id, {})
        old = room.get(user_id)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle | None = None

        def expire() -> None:
            if self.share is not None:
                # Every process must stop it at the same position: send the stop.
                self._spawn(self.share(user_id, room_id, False, None))
            else:
                self._stop(user_id, room_id, handle)

        handle = loop.call_later(timeout / 1000, expire)
        room[user_id] = handle
        changed = old is None
        if changed:
            self._advance(room_id, position)
        elif position is not None:
            self.position = position
        shared = position is not None
        self._publish(
            TypingChange(room_id, user_id, True, self.position, changed, taken_here, shared)
        )

    def _stop(
        self,
        user_id: str,
        room_id: str,
        expected: asyncio.TimerHandle | None,
        position: int | None = None,
        taken_here: bool = True,
    ) -> None:
        room = self._typing.get(room_id)
        handle = room.get(user_id) if room else None
        if position is not None:
            self.position = max(self.position, position)  # taken even by a no-op stop
        if room is None or handle is None:
            return
        if expected is not None and handle is not expected:
            return  # a newer start replaced the timer that fired
        handle.cancel()
        del room[user_id]
        if not room:
            del self._typing[room_id]
        self._advance(room_id, position)
        shared = position is not None
        self._publish(
            TypingChange(room_id, user_id, False, self.position, True, taken_here, shared)
        )

    def _advance(self, room_id: str, position: int | None = None) -> None:
        self.position = self.position + 1 if position is None else position
        self._room_position[room_id] = self.position

    def _spawn(self, job: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await job
            except Exception:
                log.exception("sharing a typing change failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        if since_pos >= 0 and since_pos >= self.position:
            return out  # nothing changed since: no look-up per joined room
        for room_id in room_ids:
            if since_pos < 0 or self._room_position.get(room_id, 0) > since_pos:
                out[room_id] = {"user_ids": self.typing_users(room_id)}
        return out

    def close(self) -> None:
        """Cancel every timer and pending share (server shutdown)."""
        for task in self._tasks:
            task.cancel()
        for room in self._typing.values():
            for handle in room.values():
                handle.cancel()
        self._typing.clear()
