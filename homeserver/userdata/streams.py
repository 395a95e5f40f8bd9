"""Stream positions of the per-user data streams (table ``user_data_streams``).

See the note in migration 0020: bumping the counter row inside the writer's
transaction serialises writers of one stream and hands out positions in
commit order, so ``current`` never runs ahead of a committed change.
"""

from __future__ import annotations

from homeserver.storage.database import Database, Queries

ACCOUNT_DATA = "account_data"
PRESENCE = "presence"


async def next_position(txn: Queries, stream: str) -> int:
    """Take the next position of ``stream``; call first in the write transaction."""
    pos = await txn.fetchval(
        "UPDATE user_data_streams SET pos = pos + 1 WHERE stream = $1 RETURNING pos", stream
    )
    return int(pos)


async def current(db: Database | Queries, stream: str) -> int:
    """The newest committed position of ``stream``."""
    pos = await db.fetchval("SELECT pos FROM user_data_streams WHERE stream = $1", stream)
    return int(pos)
