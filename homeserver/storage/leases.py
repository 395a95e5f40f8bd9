"""Table ``leases`` (DDL and reasons: migrations/0290_leases.sql): a job that only one
process at a time may do is done by the holder of its lease.

Every statement is one atomic upsert or update, so two processes that try at the
same moment cannot both succeed: PostgreSQL (and SQLite) serialise them on the
row. A holder renews with the same ``claim`` call; ``yield_when_wanted`` makes a
holder that is not the lease's home process give it up once its home process
asked for it (``want``).
"""

from __future__ import annotations

from homeserver.storage.database import Database


class LeaseStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def claim(
        self, name: str, owner: str, now_ms: int, ttl_ms: int, *, yield_when_wanted: bool = False
    ) -> bool:
        """Take or renew lease ``name`` for ``ttl_ms``: it succeeds when nobody holds it,
        when ``owner`` holds it already, or when the holder's lease expired.

        ``yield_when_wanted`` (a process that is not the lease's home): once another
        process wants it (``want``), renewing fails, and an expired lease is left to
        the process that wants it for one more ``ttl_ms`` (if that one died too, the
        lease is free again after that)."""
        keep = "leases.owner = excluded.owner"
        expired = "leases.expires_ms < $4"
        if yield_when_wanted:
            keep += " AND (leases.wanted_by IS NULL OR leases.wanted_by = excluded.owner)"
            expired += (
                " AND (leases.wanted_by IS NULL OR leases.wanted_by = excluded.owner"
                " OR leases.expires_ms < $5)"
            )
        row = await self.db.fetchone(
            "INSERT INTO leases (name, owner, expires_ms, wanted_by) VALUES ($1, $2, $3, NULL)"
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
            " expires_ms = excluded.expires_ms,"
            # Taken after expiry, or by the process that wanted it: nobody waits now.
            " wanted_by = CASE WHEN leases.expires_ms < $4"
            " OR leases.wanted_by = excluded.owner THEN NULL ELSE leases.wanted_by END"
            f" WHERE ({keep}) OR ({expired})"
            " RETURNING owner",
            name,
            owner,
            now_ms + ttl_ms,
            now_ms,
            *([now_ms - ttl_ms] if yield_when_wanted else []),
        )
        return row is not None

    async def want(self, name: str, owner: str) -> None:
        """Ask the holder of ``name`` (another process) to let it expire for ``owner``."""
        await self.db.execute(
            "UPDATE leases SET wanted_by = $2 WHERE name = $1 AND owner <> $2", name, owner
        )

    async def release(self, name: str, owner: str) -> None:
        """Give up ``name`` at once (a clean shutdown), if ``owner`` holds it."""
        await self.db.execute("DELETE FROM leases WHERE name = $1 AND owner = $2", name, owner)

    async def holder(self, name: str, now_ms: int) -> str | None:
        """Who holds ``name`` now (None: nobody, or the lease expired)."""
        row = await self.db.fetchone(
            "SELECT owner FROM leases WHERE name = $1 AND expires_ms >= $2", name, now_ms
        )
        return None if row is None else str(row[0])
