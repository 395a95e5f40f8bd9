"""Change signals and cache invalidation between processes, through PostgreSQL LISTEN/NOTIFY.

Design note
-----------
When several Myelin processes share one PostgreSQL database, a write on one
must (a) wake the long-polling /sync requests that wait on the others and
(b) drop what the others cached about the changed rows (a logged-out token,
an event pruned by a redaction, a user's push rules), and (c) a worker
must tell the main process that the federation outbox has new rows. The
database is the only thing they share, so it carries these messages too:
no new coordinator. (b) and (c) are *topics*: a list of keys, whose
subscriber also gets ``None``, meaning "any key", after a catch-up.

Each process keeps ONE connection of its own (outside the pool) that
``LISTEN``s on ``CHANNEL`` and also sends (``pg_notify``). Writers publish
*after* their transaction committed (the ``ChangeSignal`` contract in
``signal.py``), so a process that gets a message and reads the database
sees the change. A message is a small JSON object::

    {"o": origin, "k": "wake", "u": [user or room ids]}
    {"o": origin, "k": "msg", "t": topic, "x": [keys]}

``o`` is the sending process's random id: a process delivers its own
changes locally at once and ignores their echo. Lists are split so no
payload comes near PostgreSQL's 8000-byte limit.

Nothing here is a source of truth, only a hint to look again (see
``signal.py``), so losing messages must only ever cost a wasted read:

- While the connection is down, outgoing messages wait in a bounded queue
  and go out after the reconnect; if the queue overflows it is replaced by
  one "everything changed" message.
- Messages sent by others while this process was not listening are lost,
  so after every reconnect (LISTEN is active again first) the process wakes
  every waiting request and calls every topic's subscribers with ``None``
  (caches empty themselves, the outbox sender looks at every destination):
  the catch-up.
  Woken requests read their streams from their own positions, so a spurious
  wake-up returns nothing new and waits again.
- The connection is checked every ``KEEPALIVE_S`` (a half-open TCP
  connection says nothing by itself); reconnects back off exponentially
  from ``RECONNECT_MIN_S`` to ``RECONNECT_MAX_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

log = logging.getLogger("myelin.streams.bus")

CHANNEL: Final = "myelin_signals"
# PostgreSQL refuses NOTIFY payloads of 8000 bytes or more; stay well below.
MAX_PAYLOAD_BYTES: Final = 7000
MAX_OUTBOX: Final = 10_000
KEEPALIVE_S: Final = 5.0
RECONNECT_MIN_S: Final = 0.1
RECONNECT_MAX_S: Final = 10.0

# Receives a topic's keys, or None for "any key may have changed" (the catch-up).
TopicHandler = Callable[[list[str] | None], None]


def _chunks(head: dict[str, Any], field: str, items: list[str]) -> Iterable[str]:
    """JSON payloads of ``head`` with ``items`` under ``field``, each below the size limit."""
    batch: list[str] = []
    size = len(json.dumps({**head, field: []}).encode())
    for item in items:
        cost = len(json.dumps(item).encode()) + 1
        if batch and size + cost > MAX_PAYLOAD_BYTES:
            yield json.dumps({**head, field: batch})
            batch, size = [], len(json.dumps({**head, field: []}).encode())
        if size + cost > MAX_PAYLOAD_BYTES:
            log.warning("a %s key too long for NOTIFY was left out", head.get("t", "wake"))
            continue
        batch.append(item)
        size += cost
    if batch:
        yield json.dumps({**head, field: batch})


class PgSignalBus:
    """One process's end of the bus; ``start`` connects, ``close`` stops."""

    def __init__(
        self,
        dsn: str,
        wake_local: Callable[[list[str]], None],
        wake_everyone: Callable[[], None],
        *,
        keepalive_s: float = KEEPALIVE_S,
        reconnect_min_s: float = RECONNECT_MIN_S,
        reconnect_max_s: float = RECONNECT_MAX_S,
    ) -> None:
        self._dsn = dsn
        self._wake_local = wake_local
        self._wake_everyone = wake_everyone
        self._keepalive_s = keepalive_s
        self._reconnect_min_s = reconnect_min_s
        self._reconnect_max_s = reconnect_max_s
        self.origin = secrets.token_hex(8)
        self._handlers: dict[str, list[TopicHandler]] = {}
        self._outbox: deque[str] = deque()
        self._pending = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self._conn: Any = None
        self._closed = False
        # Set while LISTEN is active; tests and start() wait for it.
        self.listening = asyncio.Event()
        # How many times the connection was (re)established; the first is not a reconnect.
        self.connections = 0

    # ------------------------------------------------------------ publishing

    def publish_wake(self, users: Iterable[str]) -> None:
        """Other processes wake these users' (or rooms') requests. The caller woke its own."""
        wanted = list(dict.fromkeys(users))
        if wanted:
            self._enqueue(_chunks({"o": self.origin, "k": "wake"}, "u", wanted))

    def publish(self, topic: str, keys: Iterable[str]) -> None:
        """Other processes' subscribers of ``topic`` get these keys (for a cache: drop
        them). The caller applied them itself."""
        wanted = list(dict.fromkeys(keys))
        if wanted:
            self._enqueue(_chunks({"o": self.origin, "k": "msg", "t": topic}, "x", wanted))

    def subscribe(self, topic: str, handler: TopicHandler) -> None:
        """Call ``handler`` with what other processes publish on ``topic`` (None: any key)."""
        self._handlers.setdefault(topic, []).append(handler)

    def _enqueue(self, payloads: Iterable[str]) -> None:
        if self._closed:
            return
        self._outbox.extend(payloads)
        self._drained.clear()
        if len(self._outbox) > MAX_OUTBOX:
            log.warning("signal outbox overflowed while PostgreSQL was unreachable")
            self._outbox.clear()
            self._outbox.append(json.dumps({"o": self.origin, "k": "all"}))
        self._pending.set()

    # ------------------------------------------------------------ receiving

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            message = json.loads(payload)
            if not isinstance(message, dict) or message.get("o") == self.origin:
                return
            kind = message.get("k")
            if kind == "wake":
                self._wake_local([str(u) for u in message.get("u", [])])
            elif kind == "msg":
                keys = [str(x) for x in message.get("x", [])]
                self._deliver(str(message.get("t")), keys)
            elif kind == "all":
                self._catch_up()
        except Exception:
            log.exception("a cross-process signal could not be applied")

    def _deliver(self, topic: str, keys: list[str] | None) -> None:
        for handler in self._handlers.get(topic, ()):
            try:
                handler(keys)
            except Exception:
                log.exception("applying a %s message failed", topic)

    def _catch_up(self) -> None:
        """Messages may have been missed: every cache is emptied, every request woken."""
        for topic in list(self._handlers):
            self._deliver(topic, None)
        self._wake_everyone()

    # ------------------------------------------------------------ connection

    async def start(self) -> None:
        """Connect and LISTEN (raises if PostgreSQL cannot be reached the first time)."""
        import asyncpg

        conn = await asyncpg.connect(self._dsn)
        await conn.add_listener(CHANNEL, self._on_notify)
        self._conn = conn
        self.connections = 1
        self.listening.set()
        self._task = asyncio.create_task(self._run(), name="signal-bus")

    async def _connect(self) -> Any:
        """Connect again, with back-off, until it works or the bus is closed."""
        import asyncpg

        delay = self._reconnect_min_s
        while not self._closed:
            try:
                conn = await asyncpg.connect(self._dsn)
                await conn.add_listener(CHANNEL, self._on_notify)
                return conn
            except Exception as e:  # asyncpg's own hierarchy, OSError, timeouts
                log.warning("signal bus: PostgreSQL unreachable (%s); retrying", type(e).__name__)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._reconnect_max_s)
        return None

    async def _run(self) -> None:
        while not self._closed:
            if self._conn is None:
                self._conn = await self._connect()
                if self._conn is None:
                    return
                self.connections += 1
                self.listening.set()
                self._catch_up()
            try:
                await self._serve(self._conn)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.warning("signal bus connection lost (%s); reconnecting", type(e).__name__)
            self.listening.clear()
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.terminate()

    async def _serve(self, conn: Any) -> None:
        """Send the outbox; check the connection when idle. Returns or raises when it is lost."""
        while not self._closed:
            while self._outbox:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._outbox[0])
                self._outbox.popleft()
            self._drained.set()
            self._pending.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._pending.wait(), self._keepalive_s)
            if conn.is_closed():
                return
            if not self._pending.is_set():
                await asyncio.wait_for(conn.fetchval("SELECT 1"), self._keepalive_s)

    async def close(self) -> None:
        self._closed = True
        self._pending.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._conn is not None:
            conn, self._conn = self._conn, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 5)
        self.listening.clear()

    async def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every queued message was handed to PostgreSQL (tests, shutdown)."""
        await asyncio.wait_for(self._drained.wait(), timeout_s)
