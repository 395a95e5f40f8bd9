"""Table ``threepid_id_server_bindings`` (why it exists: migration 0310)."""

from __future__ import annotations

from homeserver.storage.database import Database


class BindingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def add(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.execute(
            "INSERT INTO threepid_id_server_bindings (user_id, medium, address, id_server)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            user_id,
            medium,
            address,
            id_server,
        )

    async def servers_for(self, user_id: str, medium: str, address: str) -> list[str]:
        rows = await self.db.fetchall(
            "SELECT id_server FROM threepid_id_server_bindings"
            " WHERE user_id = $1 AND medium = $2 AND address = $3 ORDER BY id_server",
            user_id,
            medium,
            address,
        )
        return [r[0] for r in rows]

    async def all_for(self, user_id: str) -> list[tuple[str, str, str]]:
        """(medium, address, id_server) of every binding the user made through us."""
        rows = await self.db.fetchall(
            "SELECT medium, address, id_server FROM threepid_id_server_bindings"
            " WHERE user_id = $1 ORDER BY medium, address, id_server",
            user_id,
        )
        return [(r[0], r[1], r[2]) for r in rows]

    async def remove(self, user_id: str, medium: str, address: str, id_server: str) -> None:
        await self.db.execute(
            "DELETE FROM threepid_id_server_bindings"
            " WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4",
            user_id,
            medium,
            address,
            id_server,
        )
