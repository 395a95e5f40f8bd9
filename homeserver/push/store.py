"""Tables ``push_rules`` (user-defined rules) and ``push_rule_default_overrides``.

Every method takes the query object so the push rule service can run a
change and the ``m.push_rules`` account data write in one transaction.
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.push.rules import DefaultOverride, PushRule
from homeserver.storage.database import Queries


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class PushRuleStore:
    async def user_rules(self, q: Queries, user_nid: int) -> dict[str, list[PushRule]]:
        """The user's rules per kind, most important first."""
        rows = await q.fetchall(
            "SELECT kind, rule_id, conditions, pattern, actions, enabled FROM push_rules"
            " WHERE user_nid = $1 ORDER BY kind, position",
            user_nid,
        )
        out: dict[str, list[PushRule]] = {}
        for r in rows:
            conditions = None if r[2] is None else tuple(json.loads(r[2]))
            out.setdefault(r[0], []).append(
                PushRule(
                    kind=r[0],
                    rule_id=r[1],
                    actions=tuple(json.loads(r[4])),
                    default=False,
                    enabled=bool(r[5]),
                    conditions=conditions,
                    pattern=r[3],
                )
            )
        return out

    async def overrides(self, q: Queries, user_nid: int) -> dict[str, DefaultOverride]:
        rows = await q.fetchall(
            "SELECT rule_id, enabled, actions FROM push_rule_default_overrides WHERE user_nid = $1",
            user_nid,
        )
        return {
            r[0]: DefaultOverride(
                enabled=None if r[1] is None else bool(r[1]),
                actions=None if r[2] is None else tuple(json.loads(r[2])),
            )
            for r in rows
        }

    async def replace_kind(
        self, q: Queries, user_nid: int, kind: str, rules: list[PushRule]
    ) -> None:
        """Store ``rules`` (in priority order) as the user's rules of ``kind``."""
        await q.execute("DELETE FROM push_rules WHERE user_nid = $1 AND kind = $2", user_nid, kind)
        await q.executemany(
            "INSERT INTO push_rules"
            " (user_nid, kind, rule_id, position, conditions, pattern, actions, enabled)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (
                    user_nid,
                    kind,
                    r.rule_id,
                    i,
                    None if r.conditions is None else _dump(list(r.conditions)),
                    r.pattern,
                    _dump(list(r.actions)),
                    int(r.enabled),
                )
                for i, r in enumerate(rules)
            ],
        )

    async def set_user_rule(
        self,
        q: Queries,
        user_nid: int,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: tuple[Any, ...] | None = None,
    ) -> None:
        if enabled is not None:
            await q.execute(
                "UPDATE push_rules SET enabled = $4"
                " WHERE user_nid = $1 AND kind = $2 AND rule_id = $3",
                user_nid,
                kind,
                rule_id,
                int(enabled),
            )
        if actions is not None:
            await q.execute(
                "UPDATE push_rules SET actions = $4"
                " WHERE user_nid = $1 AND kind = $2 AND rule_id = $3",
                user_nid,
                kind,
                rule_id,
                _dump(list(actions)),
            )

    async def set_default_override(
        self, q: Queries, user_nid: int, rule_id: str, override: DefaultOverride
    ) -> None:
        await q.execute(
            "INSERT INTO push_rule_default_overrides (user_nid, rule_id, enabled, actions)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (user_nid, rule_id)"
            " DO UPDATE SET enabled = excluded.enabled, actions = excluded.actions",
            user_nid,
            rule_id,
            None if override.enabled is None else int(override.enabled),
            None if override.actions is None else _dump(list(override.actions)),
        )
