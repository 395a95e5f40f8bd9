"""One database interface over two engines: SQLite (aiosqlite) and PostgreSQL (asyncpg).

Design note
-----------
Every store module writes plain SQL once, in the common subset of both
engines, with PostgreSQL-style numbered placeholders (``$1``, ``$2``). For
SQLite the placeholders are rewritten to ``?1``, ``?2`` (SQLite's numbered
form), cached per statement string.

Rows come back as ``Row`` objects that support both ``row["col"]`` and
``row[0]`` on both engines (``sqlite3.Row`` and ``asyncpg.Record``).

SQLite
    One writer connection (every transaction is ``BEGIN IMMEDIATE`` under an
    asyncio lock, because SQLite allows one writer; transactions queued behind
    the writer share one COMMIT, ``group_commit``; the statements inside a
    transaction run on the event loop's thread, ``_WriterQueries``) and a few reader
    connections for one-shot SELECTs. WAL mode lets readers run beside the
    writer and see every committed transaction. ``synchronous`` is chosen by
    the operator (``database.sqlite_synchronous``): FULL (the default) fsyncs
    the WAL at every commit, so an acknowledged event survives power loss;
    NORMAL fsyncs only at checkpoints, so power loss (not a process crash)
    may lose the newest commits, though never corrupt the file.
PostgreSQL
    An asyncpg pool. ``transaction()`` checks out one connection for the
    block. Per-room ordering is the room service's lock, not the database's.

Booleans are stored as integers (0/1) and JSON as text, so both engines
hold the same values.

Statement counting: ``count_statements()`` counts every statement issued by
the current task and the tasks it starts (a context variable), on either
engine. Tests use it to show that a request's statement count does not grow
with the number of rooms; with no counter active it costs one lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from homeserver.storage.group_commit import CommitGroups
from homeserver.storage.read_batches import ReadBatches

Row = Mapping[str, Any]

_PLACEHOLDER = re.compile(r"\$(\d+)")


@lru_cache(maxsize=4096)
def to_sqlite_sql(sql: str) -> str:
    """Rewrite ``$n`` placeholders to SQLite's ``?n``."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class StatementCounter:
    """The statements issued inside one ``count_statements()`` block."""

    def __init__(self) -> None:
        self.total = 0
        self.by_sql: Counter[str] = Counter()

    def add(self, sql: str) -> None:
        self.total += 1
        self.by_sql[" ".join(sql.split())] += 1


_counters: ContextVar[tuple[StatementCounter, ...]] = ContextVar("statement_counters", default=())


@contextlib.contextmanager
def count_statements() -> Iterator[StatementCounter]:
    """Count the SQL statements run by this task (and tasks it starts) in the block."""
    counter = StatementCounter()
    token = _counters.set((*_counters.get(), counter))
    try:
        yield counter
    finally:
        _counters.reset(token)


def _note(sql: str) -> None:
    for counter in _counters.get():
        counter.add(sql)


class Queries(Protocol):
    """The query methods shared by a database and an open transaction."""

    async def execute(self, sql: str, *args: Any) -> None: ...
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...
    async def fetchone(self, sql: str, *args: Any) -> Any: ...
    async def fetchall(self, sql: str, *args: Any) -> list[Any]: ...
    async def fetchval(self, sql: str, *args: Any) -> Any: ...


class WriteBatch:
    """``Queries`` that record writes instead of running them, for ``write_batch``: store
    methods written against a transaction (``..._in(q, ...)``) fill one batch. Reads
    are refused: a batch is sent whole, so nothing in it can depend on a result."""

    def __init__(self) -> None:
        self.statements: list[tuple[str, Sequence[Sequence[Any]]]] = []

    async def execute(self, sql: str, *args: Any) -> None:
        self.statements.append((sql, [args]))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.statements.append((sql, list(rows)))

    async def fetchone(self, sql: str, *args: Any) -> Any:
        raise TypeError("a write batch cannot read")

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        raise TypeError("a write batch cannot read")

    async def fetchval(self, sql: str, *args: Any) -> Any:
        raise TypeError("a write batch cannot read")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connections for the metrics: open now, checked out now, the most ever opened."""

    size: int
    in_use: int
    max_size: int


class Database(ABC):
    """The engine-neutral interface that every store module uses."""

    engine: str

    @abstractmethod
    def pool_stats(self) -> PoolStats:
        """How busy the connections are (metrics only; no I/O)."""

    @abstractmethod
    def transaction(self) -> contextlib.AbstractAsyncContextManager[Queries]:
        """Run a block as one transaction; committed on success, rolled back on error."""

    @abstractmethod
    async def execute(self, sql: str, *args: Any) -> None: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...

    @abstractmethod
    async def fetchone(self, sql: str, *args: Any) -> Any: ...

    @abstractmethod
    async def fetchall(self, sql: str, *args: Any) -> list[Any]: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]

    @abstractmethod
    async def executescript(self, script: str) -> None:
        """Run several statements (migrations only)."""

    async def write_batch(
        self, batch: Sequence[tuple[str, Sequence[Sequence[Any]]]], derived: bool = False
    ) -> None:
        """One write transaction of ``batch``: each statement run once per row of its
        arguments, in order. SQLite sends it to the writer as ONE job when no commit
        group is open (``SqliteDatabase``): a short transaction on a latency path (the
        push evaluator's, which every woken /sync waits for) then costs one hand-off
        to the writer's thread, not one per statement plus its BEGIN and COMMIT.

        ``derived``: the batch only holds what can be computed again from durable rows
        (and the cursor saying how far that went, in the same batch), so losing it to a
        power cut loses no acknowledged write. SQLite then commits that one job without
        its own fsync (``_batch_in_thread``)."""
        async with self.transaction() as q:
            for sql, rows in batch:
                if len(rows) == 1:
                    await q.execute(sql, *rows[0])
                elif rows:
                    await q.executemany(sql, rows)

    @abstractmethod
    async def close(self) -> None: ...


# --------------------------------------------------------------------- SQLite


# Each statement is one job on the connection's aiosqlite thread: execute, read and
# close the cursor there in one go. (Through aiosqlite's cursor API a fetch was three
# jobs, execute, fetch and close, each a hand-off between the event loop and the
# thread; on a busy 2-core machine those hand-offs were most of a /sync's CPU.)
# ``Connection._execute`` is how aiosqlite's own ``Cursor`` queues work on the thread.


def _run_in_thread(conn: Any, sql: str, args: Sequence[Any]) -> None:
    conn._conn.execute(sql, args).close()


def _fetchone_in_thread(conn: Any, sql: str, args: Sequence[Any]) -> Any:
    cur = conn._conn.execute(sql, args)
    try:
        return cur.fetchone()
    finally:
        cur.close()  # no half-read statement keeps its read snapshot


def _fetchall_in_thread(conn: Any, sql: str, args: Sequence[Any]) -> list[Any]:
    cur = conn._conn.execute(sql, args)
    try:
        return list(cur.fetchall())
    finally:
        cur.close()


def _batch_in_thread(
    conn: Any, batch: Sequence[tuple[str, Sequence[Sequence[Any]]]], restore: str | None = None
) -> None:
    """BEGIN, the statements, COMMIT, in one go on the writer's thread (rolled back on
    any error, so the writer is left outside a transaction whatever happens).

    With ``restore`` (the connection's configured level), the transaction commits
    under ``synchronous=NORMAL``: in WAL mode its COMMIT appends to the WAL without an
    fsync. It stays atomic (a power cut loses it whole, never half), and the next
    commit under FULL fsyncs the WAL and with it every frame before it, this one too.
    The level is set back before the job ends, so no other transaction runs under it."""
    raw = conn._conn
    if restore is not None:
        raw.execute("PRAGMA synchronous=NORMAL").close()
    try:
        raw.execute("BEGIN IMMEDIATE").close()
        try:
            for sql, rows in batch:
                if len(rows) == 1:
                    raw.execute(sql, rows[0]).close()
                elif rows:
                    raw.executemany(sql, rows).close()
            raw.execute("COMMIT").close()
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK").close()
            raise
    finally:
        if restore is not None:
            raw.execute(f"PRAGMA synchronous={restore}").close()


async def _run(conn: Any, sql: str, args: Sequence[Any] = ()) -> None:
    """Execute and close the cursor at once, so no half-read statement keeps a lock."""
    await conn._execute(_run_in_thread, conn, sql, args)


def _run_now(conn: Any, sql: str) -> None:
    """One statement on the writer in the caller's thread (``_WriterQueries``)."""
    _run_in_thread(conn, sql, ())


class _SqliteQueries:
    """Query methods bound to one aiosqlite connection."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        _note(sql)
        await _run(self._conn, to_sqlite_sql(sql), args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        _note(sql)
        await self._conn.executemany(to_sqlite_sql(sql), list(rows))

    async def fetchone(self, sql: str, *args: Any) -> Any:
        _note(sql)
        conn = self._conn
        return await conn._execute(_fetchone_in_thread, conn, to_sqlite_sql(sql), args)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        _note(sql)
        conn = self._conn
        rows: list[Any] = await conn._execute(_fetchall_in_thread, conn, to_sqlite_sql(sql), args)
        return rows

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = await self.fetchone(sql, *args)
        return None if row is None else row[0]


# An executemany of more rows than this goes to the writer's thread (a big batch, such
# as a join's thousands of outliers, would hold up the event loop).
INLINE_ROWS = 64


class _WriterQueries(_SqliteQueries):
    """The statements of a write transaction, run at once on the event loop's thread.

    The writer's lock is held for the whole body of a transaction, and every other
    writer waits for it (``group_commit``). Through the writer's thread each statement
    was a hand-off and back, and the way back waits for the event loop, which is busy
    with other requests: under load a send's ~8 statements held the lock for ~8 turns
    of the loop (most of its time), and 16 rooms sending at once queued behind each
    other there. Run here, a body holds the lock only for its own work. Safe: only the
    lock's holder uses the writer (the connection allows other threads,
    ``check_same_thread=False``, for BEGIN, COMMIT and big batches, which stay on its
    thread: COMMIT waits for the fsync); a statement in a transaction opened with
    BEGIN IMMEDIATE never waits for another connection's lock."""

    async def execute(self, sql: str, *args: Any) -> None:
        _note(sql)
        _run_in_thread(self._conn, to_sqlite_sql(sql), args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        batch = list(rows)
        if len(batch) > INLINE_ROWS:
            await super().executemany(sql, batch)
            return
        _note(sql)
        self._conn._conn.executemany(to_sqlite_sql(sql), batch).close()

    async def fetchone(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return _fetchone_in_thread(self._conn, to_sqlite_sql(sql), args)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        _note(sql)
        return _fetchall_in_thread(self._conn, to_sqlite_sql(sql), args)


# PRAGMA synchronous values we allow (see the design note of SqliteDatabase).
SQLITE_SYNCHRONOUS = ("full", "normal")


class SqliteDatabase(Database):
    """SQLite through aiosqlite: one writer, a few readers, WAL mode."""

    engine = "sqlite"

    def __init__(self, path: str, readers: int = 3, synchronous: str = "full") -> None:
        if synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"synchronous must be one of {SQLITE_SYNCHRONOUS}")
        self._path = path
        self._synchronous = synchronous.upper()
        self._n_readers = readers
        self._writer: Any = None
        self._readers: asyncio.Queue[Any] = asyncio.Queue()
        self._reader_conns: list[Any] = []
        # The reads of one turn of the event loop go to the readers together.
        self.reads = ReadBatches(self._readers)
        # The writer's lock, and the commit group that transactions queued behind it
        # share (``group_commit``); set by ``open``.
        self._groups: CommitGroups | None = None

    def pool_stats(self) -> PoolStats:
        """The writer (in use while a write transaction holds its lock) and the readers."""
        opened = len(self._reader_conns) + (1 if self._writer is not None else 0)
        readers_busy = len(self._reader_conns) - self._readers.qsize()
        writing = self._groups is not None and self._groups.locked()
        in_use = readers_busy + (1 if writing else 0)
        return PoolStats(opened, in_use, self._n_readers + 1)

    async def open(self) -> None:
        import aiosqlite

        self._writer = await self._connect(aiosqlite, check_same_thread=False)
        await _run(self._writer, "PRAGMA journal_mode=WAL")
        self._groups = CommitGroups(self._writer, _run, run_now=_run_now)
        for _ in range(self._n_readers):
            conn = await self._connect(aiosqlite)
            self._reader_conns.append(conn)
            self._readers.put_nowait(conn)

    async def _connect(self, aiosqlite: Any, check_same_thread: bool = True) -> Any:
        import sqlite3

        conn = await aiosqlite.connect(
            self._path, isolation_level=None, check_same_thread=check_same_thread
        )
        conn.row_factory = sqlite3.Row
        pragmas = ("foreign_keys=ON", f"synchronous={self._synchronous}", "busy_timeout=10000")
        for pragma in pragmas:
            await _run(conn, "PRAGMA " + pragma)
        return conn

    @property
    def _commit_groups(self) -> CommitGroups:
        if self._groups is None:
            raise RuntimeError("the SQLite database is not open")
        return self._groups

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        """A write transaction; it may share its COMMIT with the transactions queued
        behind it (``group_commit``), and ends only once that COMMIT holds it."""
        async with self._commit_groups.transaction():
            yield _WriterQueries(self._writer)

    async def execute(self, sql: str, *args: Any) -> None:
        _note(sql)
        await self._commit_groups.statement(lambda: _run(self._writer, to_sqlite_sql(sql), args))

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as txn:
            await txn.executemany(sql, rows)

    async def fetchone(self, sql: str, *args: Any) -> Any:
        if _is_read(sql):
            _note(sql)
            return await self.reads.read(_fetchone_in_thread, to_sqlite_sql(sql), args)
        async with self.transaction() as txn:
            return await txn.fetchone(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        if _is_read(sql):
            _note(sql)
            rows: list[Any] = await self.reads.read(_fetchall_in_thread, to_sqlite_sql(sql), args)
            return rows
        async with self.transaction() as txn:
            return await txn.fetchall(sql, *args)

    async def write_batch(
        self, batch: Sequence[tuple[str, Sequence[Sequence[Any]]]], derived: bool = False
    ) -> None:
        groups = self._commit_groups
        if not groups.idle():
            # Others are writing: join their commit group (one COMMIT for all, under
            # the configured level: the others' writes are not derived).
            await super().write_batch(batch)
            return
        # A derived batch alone commits without an fsync (see ``_batch_in_thread``):
        # on the path from a send to its woken /sync, the push evaluator's fsync held
        # the writer's thread and the disk while that sync read.
        restore = self._synchronous if derived and self._synchronous == "FULL" else None
        prepared = []
        for sql, rows in batch:
            _note(sql)
            prepared.append((to_sqlite_sql(sql), [tuple(r) for r in rows]))
        writer = self._writer

        async def run() -> None:
            # One job: a cancelled caller leaves it to finish on the thread, which runs
            # jobs in order, so the next BEGIN still comes after its COMMIT.
            await writer._execute(_batch_in_thread, writer, prepared, restore)

        await groups.exclusive(run)

    async def executescript(self, script: str) -> None:
        async def run() -> None:
            try:
                await self._writer.executescript("BEGIN IMMEDIATE;\n" + script + "\nCOMMIT;")
            except BaseException:
                if self._writer.in_transaction:
                    await _run(self._writer, "ROLLBACK")
                raise

        await self._commit_groups.exclusive(run)

    async def close(self) -> None:
        if self._groups is not None:
            await self._groups.close()
            self._groups = None
        for conn in self._reader_conns:
            await conn.close()
        if self._writer is not None:
            await self._writer.close()
        self._reader_conns.clear()
        self._writer = None


def _is_read(sql: str) -> bool:
    head = sql.lstrip()[:6].upper()
    return head == "SELECT" or (head.startswith("WITH") and "RETURNING" not in sql.upper())


# ----------------------------------------------------------------- PostgreSQL


class _PgQueries:
    """Query methods bound to one asyncpg connection (or the pool)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *args: Any) -> None:
        _note(sql)
        await self._conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        _note(sql)
        await self._conn.executemany(sql, list(rows))

    async def fetchone(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return await self._conn.fetchrow(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        _note(sql)
        return list(await self._conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return await self._conn.fetchval(sql, *args)


async def _keep_session(_conn: Any) -> None:
    """Release a pooled connection without asyncpg's default reset query
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): that is one more
    round trip after every statement run outside a transaction and after every
    transaction, doubling the round trips of a /sync or a send. Nothing here leaves
    session state on a pooled connection: advisory locks are transaction-scoped
    (``pg_advisory_xact_lock``), LISTEN and the process lock use connections of their
    own, no cursor or ``SET`` outlives its transaction. asyncpg still rolls back a
    transaction left open before it calls this (``Connection._reset``), so a failed
    transaction never leaks into the next user (tests/storage/test_pg_pool.py)."""


class PostgresDatabase(Database):
    """PostgreSQL through an asyncpg pool."""

    engine = "postgres"

    def __init__(self, dsn: str, min_size: int = 2, max_size: int = 10) -> None:
        self._dsn = dsn
        self._min = min_size
        self._max = max_size
        self._pool: Any = None

    def pool_stats(self) -> PoolStats:
        if self._pool is None:
            return PoolStats(0, 0, self._max)
        size = int(self._pool.get_size())
        return PoolStats(size, size - int(self._pool.get_idle_size()), self._max)

    async def open(self) -> None:
        import asyncpg

        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=self._min,
            max_size=self._max,
            command_timeout=60,
            reset=_keep_session,
        )

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield _PgQueries(conn)

    async def execute(self, sql: str, *args: Any) -> None:
        _note(sql)
        await self._pool.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self.transaction() as txn:
            await txn.executemany(sql, rows)

    async def fetchone(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return await self._pool.fetchrow(sql, *args)

    async def fetchall(self, sql: str, *args: Any) -> list[Any]:
        _note(sql)
        return list(await self._pool.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        _note(sql)
        return await self._pool.fetchval(sql, *args)

    async def executescript(self, script: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(script)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


class DatabaseUnavailable(Exception):
    """The configured database cannot be opened; the message names why."""


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite://`` URL (``:memory:`` for none), or None for PostgreSQL."""
    if not url.startswith("sqlite://"):
        return None
    path = url.removeprefix("sqlite://")
    if path.startswith("//"):  # sqlite:////abs/path written SQLAlchemy-style
        path = path[1:]
    return path or ":memory:"


async def connect(url: str, sqlite_synchronous: str = "full", pool_size: int = 10) -> Database:
    """Open the database named by ``url`` (``sqlite:///path`` or ``postgresql://...``);
    ``pool_size`` bounds a PostgreSQL pool (SQLite has one writer and a few readers)."""
    path = sqlite_path(url)
    if path is not None:
        # SQLite is imported only here and by ``SqliteDatabase``: a server on PostgreSQL
        # never loads it (~1 MiB of resident memory).
        import sqlite3

        sdb = SqliteDatabase(path, synchronous=sqlite_synchronous)
        try:
            await sdb.open()
        except sqlite3.Error as e:
            await sdb.close()
            raise DatabaseUnavailable(f"cannot open SQLite database {path}: {e}") from None
        return sdb
    if url.startswith(("postgresql://", "postgres://")):
        pdb = PostgresDatabase(url, min_size=min(2, pool_size), max_size=pool_size)
        try:
            await pdb.open()
        except (TimeoutError, OSError) as e:
            raise DatabaseUnavailable(f"cannot reach PostgreSQL: {e}") from None
        except Exception as e:  # asyncpg raises its own hierarchy for auth/db errors
            raise DatabaseUnavailable(f"cannot open PostgreSQL database: {e}") from None
        return pdb
    raise DatabaseUnavailable(
        f"unsupported database URL scheme in {url.split(':', 1)[0]!r}; "
        "use sqlite:///path or postgresql://..."
    )
