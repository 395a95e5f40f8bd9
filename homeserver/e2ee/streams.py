"""Allocating positions in the e2ee streams (table ``e2e_stream_heads``).

Positions are handed out by ``UPDATE ... SET pos = pos + n RETURNING pos``
inside the writer's transaction. On PostgreSQL the row lock taken by the
UPDATE is held until commit, so a second writer waits and then continues
from the committed value: positions become visible in increasing order and
a reader that has seen position N never later finds a smaller one. On
SQLite there is a single writer, so the same holds trivially.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Queries

DEVICE_LISTS = "device_lists"
TO_DEVICE = "to_device"


async def allocate(txn: Queries, stream: str, count: int = 1) -> range:
    """Reserve ``count`` consecutive positions of ``stream`` in this transaction."""
    top: int = await txn.fetchval(
        "UPDATE e2e_stream_heads SET pos = pos + $1 WHERE stream = $2 RETURNING pos",
        count,
        stream,
    )
    return range(top - count + 1, top + 1)


async def current(db: Database | Queries, stream: str) -> int:
    """The highest committed position of ``stream``."""
    pos: int = await db.fetchval("SELECT pos FROM e2e_stream_heads WHERE stream = $1", stream)
    return pos
