"""Tables ``e2e_cross_signing_keys`` and ``e2e_cross_signing_signatures``
(DDL and reasons: migrations/0030_e2ee.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Queries
from homeserver.storage.sql import placeholders


@dataclass(frozen=True, slots=True)
class StoredSignature:
    target_user_id: str
    target_key_id: str
    signer_user_id: str
    signer_key_id: str
    signature: str


class CrossSigningStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def keys_of(self, db: Database | Queries, user_id: str) -> dict[str, dict[str, Any]]:
        """usage -> key JSON of one user's current cross-signing keys."""
        rows = await db.fetchall(
            "SELECT usage, key_json FROM e2e_cross_signing_keys WHERE user_id = $1", user_id
        )
        return {r[0]: json.loads(r[1]) for r in rows}

    async def keys_of_users(self, user_ids: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
        """user -> usage -> key JSON, for several users in one query."""
        if not user_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT user_id, usage, key_json FROM e2e_cross_signing_keys"
            f" WHERE user_id IN ({placeholders(len(user_ids))})",
            *user_ids,
        )
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for r in rows:
            out.setdefault(r[0], {})[r[1]] = json.loads(r[2])
        return out

    async def put_key(
        self, txn: Queries, user_id: str, usage: str, public_key: str, key_json: str
    ) -> None:
        await txn.execute(
            "INSERT INTO e2e_cross_signing_keys (user_id, usage, public_key, key_json)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, usage) DO UPDATE"
            " SET public_key = excluded.public_key, key_json = excluded.key_json",
            user_id,
            usage,
            public_key,
            key_json,
        )

    async def delete_user(self, txn: Queries, user_id: str) -> None:
        await txn.execute("DELETE FROM e2e_cross_signing_keys WHERE user_id = $1", user_id)
        await txn.execute(
            "DELETE FROM e2e_cross_signing_signatures"
            " WHERE target_user_id = $1 OR signer_user_id = $1",
            user_id,
        )

    async def add_signatures(self, txn: Queries, sigs: list[StoredSignature]) -> None:
        await txn.executemany(
            "INSERT INTO e2e_cross_signing_signatures (target_user_id, target_key_id,"
            " signer_user_id, signer_key_id, signature) VALUES ($1, $2, $3, $4, $5)"
            " ON CONFLICT (target_user_id, target_key_id, signer_user_id, signer_key_id)"
            " DO UPDATE SET signature = excluded.signature",
            [
                (s.target_user_id, s.target_key_id, s.signer_user_id, s.signer_key_id, s.signature)
                for s in sigs
            ],
        )

    async def signatures_on(
        self, target_user_ids: list[str], signer_user_ids: list[str]
    ) -> list[StoredSignature]:
        """Signatures on keys of ``target_user_ids`` made by ``signer_user_ids``."""
        if not target_user_ids or not signer_user_ids:
            return []
        n = len(target_user_ids)
        rows = await self.db.fetchall(
            "SELECT target_user_id, target_key_id, signer_user_id, signer_key_id, signature"
            " FROM e2e_cross_signing_signatures"
            f" WHERE target_user_id IN ({placeholders(n)})"
            f" AND signer_user_id IN ({placeholders(len(signer_user_ids), n + 1)})",
            *target_user_ids,
            *signer_user_ids,
        )
        return [StoredSignature(r[0], r[1], r[2], r[3], r[4]) for r in rows]
