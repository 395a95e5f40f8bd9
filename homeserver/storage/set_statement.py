"""One read statement, issued by many callers in the same turn of the event loop, run
once for all of them on PostgreSQL.

Design note
-----------
The 20 /sync requests woken by one message each read their heads and memberships with
the same statement and their own arguments: 20 round trips on PostgreSQL, queued on
the pool beside everything else (issue 15, fan-out p95). ``SetStatement`` gathers the
calls of one turn (``turn_batches.py``) and runs them as ONE statement: the callers'
arguments as arrays, unnested with their ordinal, and the statement as a ``LATERAL``
subquery over each tuple, its ``$n`` become the tuple's columns. Each caller gets its
own rows, in the statement's order, and from one snapshot for all (each caller's rows
are as consistent as its own statement's were). The subqueries that read no argument
(the stream heads) are evaluated once for all.

On SQLite (no ``LATERAL``) every call runs as itself: its reads of a turn already share
the reader threads' jobs (``read_batches.py``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from homeserver.storage.database import Database
from homeserver.storage.turn_batches import Futures, TurnBatches, answer, fail

# The ordinal column of the arguments' tuple: which caller a row is for (last, so that
# the statement's own columns keep their positions and names).
BATCH_INDEX = "batch_index"
_PLACEHOLDER = re.compile(r"\$(\d+)")


class SetStatement:
    """``sql`` with placeholders ``$1..$n`` of the PostgreSQL ``types`` (one per
    placeholder), fetched for many callers at once."""

    def __init__(self, db: Database, sql: str, types: Sequence[str]) -> None:
        self._db = db
        self.sql = sql
        self.many_sql = many_statement(sql, types)
        self._batches: TurnBatches[tuple[Any, ...]] | None = (
            TurnBatches(self._run) if db.engine == "postgres" else None
        )

    async def fetchall(self, *args: Any) -> list[Any]:
        """``sql``'s rows for ``args``, read with the other calls of this turn."""
        if self._batches is None:
            return await self._db.fetchall(self.sql, *args)
        rows: list[Any] = await self._batches.submit(args)
        return rows

    async def _run(self, calls: list[tuple[Any, ...]], futs: Futures) -> None:
        try:
            if len(calls) == 1:
                answers = [await self._db.fetchall(self.sql, *calls[0])]
            else:
                answers = [[] for _ in calls]
                columns = [list(c) for c in zip(*calls, strict=True)]
                for row in await self._db.fetchall(self.many_sql, *columns):
                    answers[row[BATCH_INDEX] - 1].append(row)
        except BaseException as e:
            fail(futs, e)
            if not isinstance(e, Exception):
                raise
            return
        answer(futs, [(True, a) for a in answers])


def many_statement(sql: str, types: Sequence[str]) -> str:
    """``sql`` over arrays of its arguments: a LATERAL subquery per tuple."""
    arrays = ", ".join(f"${i}::{t}[]" for i, t in enumerate(types, 1))
    cols = ", ".join(f"a{i}" for i in range(1, len(types) + 1))
    inner = _PLACEHOLDER.sub(lambda m: f"batch_args.a{m.group(1)}", sql)
    return (
        f"SELECT x.*, batch_args.{BATCH_INDEX} FROM unnest({arrays}) WITH ORDINALITY"
        f" AS batch_args({cols}, {BATCH_INDEX}) CROSS JOIN LATERAL ({inner}) AS x"
    )
