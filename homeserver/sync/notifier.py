"""Wake-ups for long-polling /sync requests, keyed by user.

Design note
-----------
A /sync request with nothing new calls ``listen(user_id)`` *before* it reads
the stream position and looks for changes, then awaits the returned
listener. Whatever is persisted after ``listen`` sets the listener, so an
event that commits between "read the position" and "start waiting" is
never missed. There is no polling: a listener is an ``asyncio.Event`` that
the persisting code sets through ``notify``. Listeners are removed when
their request ends (``close``), so idle users cost nothing.

With several processes over one PostgreSQL, ``relay`` is set to the
cross-process bus (``homeserver.streams.pg_bus``): every ``notify`` is also
published, and what other processes publish arrives through ``wake_local``
(never relayed again).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import TracebackType


class Listener:
    def __init__(self, notifier: Notifier, keys: tuple[str, ...]) -> None:
        self._notifier = notifier
        # A user id, and room ids the request also waits on (rooms it peeks into).
        self.keys = keys
        self.event = asyncio.Event()

    async def wait(self, timeout_s: float) -> bool:
        """True if woken, False on timeout or when the server is stopping.

        A wake-up is consumed here, by the wait that returns it, and nowhere else: one that
        comes while the request is busy building an answer stays set, so the next wait
        returns at once instead of sleeping through an event it has not read.
        """
        if self._notifier.closed:
            return False
        try:
            # asyncio.timeout, not wait_for: no task of its own per wait (20 woken
            # long-polls of one message made 20 tasks more to schedule).
            async with asyncio.timeout(timeout_s):
                await self.event.wait()
        except TimeoutError:
            return False
        self.event.clear()
        return not self._notifier.closed

    def close(self) -> None:
        self._notifier._remove(self)

    def __enter__(self) -> Listener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Notifier:
    def __init__(self) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self.closed = False
        # Other processes hear of every local wake-up through this (None: one process).
        self.relay: Callable[[list[str]], None] | None = None

    def close(self) -> None:
        """The server is stopping: every waiting request answers now with what it has,
        rather than holding up shutdown until its timeout."""
        self.closed = True
        for group in self._listeners.values():
            for listener in group:
                listener.event.set()

    def listen(self, user_id: str, *also: str) -> Listener:
        """A listener woken by ``notify`` of ``user_id`` or of any key in ``also``."""
        listener = Listener(self, (user_id, *also))
        for key in listener.keys:
            self._listeners.setdefault(key, set()).add(listener)
        return listener

    def also(self, listener: Listener, keys: Iterable[str]) -> None:
        """Wake ``listener`` by ``notify`` of ``keys`` too (rooms a request learnt it
        peeks into after it started listening)."""
        added = tuple(k for k in keys if k not in listener.keys)
        listener.keys = (*listener.keys, *added)
        for key in added:
            self._listeners.setdefault(key, set()).add(listener)

    def changed(self, stream: str, position: int, users: Iterable[str]) -> None:
        """``ChangeSignal``: a stream moved; wake these users' requests (they read every
        stream from their own token, so which stream and position do not matter here)."""
        self.notify(users)

    def notify(self, user_ids: Iterable[str]) -> None:
        """Wake every waiting request of these users, here and in other processes."""
        if self.relay is None:
            self.wake_local(user_ids)
            return
        wanted = list(user_ids)
        self.wake_local(wanted)
        self.relay(wanted)

    def wake_local(self, user_ids: Iterable[str]) -> None:
        """Wake this process's waiting requests of these users only."""
        for user_id in user_ids:
            for listener in self._listeners.get(user_id, ()):
                listener.event.set()

    def wake_everyone(self) -> None:
        """Wake every waiting request (wake-ups may have been missed: they read again)."""
        for group in self._listeners.values():
            for listener in group:
                listener.event.set()

    def _remove(self, listener: Listener) -> None:
        for key in listener.keys:
            group = self._listeners.get(key)
            if group is None:
                continue
            group.discard(listener)
            if not group:
                del self._listeners[key]
