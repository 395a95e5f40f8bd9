"""Push rules per user: the defaults merged with the user's rules and changes.

A change runs in one transaction that first takes an ``account_data``
stream position (serialising concurrent changes of the same ruleset), edits
the tables, reloads the ruleset and writes it as the ``m.push_rules``
account data (spec: "Push Rules: Events"), so /sync sees it. The merged
ruleset is cached per user and replaced after each committed change; a
process that shares the database with other workers should not cache
(``cache=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import replace
from typing import Any

from homeserver.errors import MatrixError, invalid_param, not_found
from homeserver.push.rules import (
    DefaultOverride,
    PushRule,
    build_ruleset,
    ordered,
    ruleset_json,
)
from homeserver.push.store import PushRuleStore
from homeserver.push.validate import (
    check_kind,
    check_new_rule_id,
    is_default,
    parse_actions,
    parse_conditions,
    parse_pattern,
)
from homeserver.storage.database import Database, Queries
from homeserver.userdata import streams
from homeserver.userdata.account_data import AccountDataService

# The cache's name on the cross-process bus (homeserver.streams.pg_bus); keys are user ids.
PUSH_RULES_CACHE = "push_rules"

Ruleset = dict[str, list[PushRule]]


class PushRuleService:
    def __init__(
        self,
        db: Database,
        store: PushRuleStore,
        account_data: AccountDataService,
        *,
        cache: bool = True,
    ) -> None:
        self.db = db
        self.store = store
        self.account_data = account_data
        self._use_cache = cache
        self._cache: dict[str, Ruleset] = {}
        # Evaluation order per user, derived from ``_cache`` (every event evaluates it for
        # every local member, so it is built once); dropped wherever ``_cache`` changes.
        self._ordered: dict[str, list[PushRule]] = {}
        # Whether a user's rules are exactly the server defaults (``uses_defaults``),
        # likewise derived from ``_cache`` and dropped with it.
        self._plain: dict[str, bool] = {}
        # Users whose rules may differ from the defaults (``customised``; None: not read),
        # and a counter that keeps a read racing with a change from storing what it read.
        self._custom: set[str] | None = None
        self._custom_generation = 0
        # Other processes drop what this one changes (cache name, keys); None: one process.
        self.publish: Callable[[str, list[str]], None] | None = None

    async def _load(self, q: Queries | Database, user_nid: int, user_id: str) -> Ruleset:
        user_rules = await self.store.user_rules(q, user_nid)
        overrides = await self.store.overrides(q, user_nid)
        return build_ruleset(user_id, user_rules, overrides)

    async def ruleset(self, user_nid: int, user_id: str) -> Ruleset:
        cached = self._cache.get(user_id)
        if cached is not None:
            return cached
        rs = await self._load(self.db, user_nid, user_id)
        if self._use_cache:
            self._cache[user_id] = rs
        return rs

    async def rules_for_user(self, user_id: str) -> list[PushRule]:
        """Every rule of ``user_id`` in evaluation order, for the evaluator."""
        hit = self._ordered.get(user_id)
        if hit is not None:
            return hit
        cached = self._cache.get(user_id)
        if cached is None:
            nid = await self.db.fetchval("SELECT user_nid FROM users WHERE user_id = $1", user_id)
            if nid is None:
                return []
            cached = await self.ruleset(int(nid), user_id)
        rules = ordered(cached)
        if self._use_cache:
            self._ordered[user_id] = rules
        return rules

    async def uses_defaults(self, user_id: str) -> bool:
        """True if the user's rules are the server defaults, unchanged: then only their
        user id and display name make their outcome differ from anyone else's (what
        notifications.py relies on to evaluate a big room's ordinary message once)."""
        hit = self._plain.get(user_id)
        if hit is not None:
            return hit
        plain = await self.rules_for_user(user_id) == ordered(build_ruleset(user_id, {}, {}))
        if self._use_cache:
            self._plain[user_id] = plain
        return plain

    async def customised(self) -> Set[str]:
        """Every user whose rules may differ from the server defaults: whoever has a rule
        or a change to a default rule stored, or changed them since (a superset: a user
        whose changes put the defaults back is in it). Everyone else ``uses_defaults``, so
        an evaluation of a big room's message looks at these users only, not at every
        member (notifications.py). Read once, then kept up to date by every change, here
        and, through ``drop_cached``, in the other processes."""
        if self._custom is not None:
            return self._custom
        generation = self._custom_generation
        rows = await self.db.fetchall(
            "SELECT user_id FROM users WHERE user_nid IN"
            " (SELECT user_nid FROM push_rules UNION"
            " SELECT user_nid FROM push_rule_default_overrides)"
        )
        found = {str(r[0]) for r in rows}
        if self._use_cache and generation == self._custom_generation:
            self._custom = found
        return found

    def _customised(self, user_ids: list[str] | None) -> None:
        """These users' rules changed (None: anyone's may have)."""
        self._custom_generation += 1
        if user_ids is None:
            self._custom = None
        elif self._custom is not None:
            self._custom.update(user_ids)

    async def client_ruleset(self, user_id: str) -> dict[str, Any]:
        """The ``m.push_rules`` content: ``{"global": Ruleset}``."""
        cached = self._cache.get(user_id)
        if cached is not None:  # no user_nid lookup on every initial /sync
            return {"global": ruleset_json(cached)}
        nid = await self.db.fetchval("SELECT user_nid FROM users WHERE user_id = $1", user_id)
        if nid is None:
            return {"global": ruleset_json(build_ruleset(user_id, {}, {}))}
        return {"global": ruleset_json(await self.ruleset(int(nid), user_id))}

    async def get_rule(self, user_nid: int, user_id: str, kind: str, rule_id: str) -> PushRule:
        check_kind(kind)
        for rule in (await self.ruleset(user_nid, user_id))[kind]:
            if rule.rule_id == rule_id:
                return rule
        raise not_found("The push rule was not found.")

    # --------------------------------------------------------------- changes

    async def _change(self, user_nid: int, user_id: str, edit: Any) -> None:
        async with self.db.transaction() as txn:
            pos = await streams.next_position(txn, streams.ACCOUNT_DATA)
            current = await self._load(txn, user_nid, user_id)
            await edit(txn, current)
            after = await self._load(txn, user_nid, user_id)
            await self.account_data.put_in(
                txn, user_nid, None, "m.push_rules", {"global": ruleset_json(after)}, pos
            )
        if self._use_cache:
            self._cache[user_id] = after
            self._ordered.pop(user_id, None)
            self._plain.pop(user_id, None)
        self._customised([user_id])
        if self.publish is not None:
            self.publish(PUSH_RULES_CACHE, [user_id])
        self.account_data.notify(user_id, pos)

    def drop_cached(self, user_ids: list[str] | None) -> None:
        """Another process changed these users' rules (None: anyone's): read them again."""
        self._customised(user_ids)
        if user_ids is None:
            self._cache.clear()
            self._ordered.clear()
            self._plain.clear()
            return
        for user_id in user_ids:
            self._cache.pop(user_id, None)
            self._ordered.pop(user_id, None)
            self._plain.pop(user_id, None)

    async def put_rule(
        self,
        user_nid: int,
        user_id: str,
        kind: str,
        rule_id: str,
        body: dict[str, Any],
        before: str | None,
        after: str | None,
    ) -> None:
        check_kind(kind)
        check_new_rule_id(rule_id)
        actions = parse_actions(body.get("actions"))
        pattern = parse_pattern(kind, body)
        conditions = (
            parse_conditions(body.get("conditions")) if kind in ("override", "underride") else None
        )
        for anchor in (before, after):
            if anchor is not None and anchor.startswith("."):
                raise MatrixError(
                    400, "M_UNKNOWN", "Cannot place a rule relative to a server-default rule"
                )

        async def edit(txn: Queries, current: Ruleset) -> None:
            mine = [r for r in current[kind] if not r.default]
            old = next((r for r in mine if r.rule_id == rule_id), None)
            rule = PushRule(
                kind=kind,
                rule_id=rule_id,
                actions=actions,
                enabled=True if old is None else old.enabled,
                conditions=conditions,
                pattern=pattern,
            )
            rest = [r for r in mine if r.rule_id != rule_id]
            anchor = before if before is not None else after
            if anchor is not None:
                idx = next((i for i, r in enumerate(rest) if r.rule_id == anchor), None)
                if idx is None:
                    raise MatrixError(400, "M_UNKNOWN", "before/after rule not found")
                rest.insert(idx if before is not None else idx + 1, rule)
            elif old is not None:
                rest.insert(mine.index(old), rule)
            else:
                rest.insert(0, rule)
            await self.store.replace_kind(txn, user_nid, kind, rest)

        await self._change(user_nid, user_id, edit)

    async def delete_rule(self, user_nid: int, user_id: str, kind: str, rule_id: str) -> None:
        check_kind(kind)
        if is_default(kind, rule_id):
            raise invalid_param("Server-default rules cannot be deleted")

        async def edit(txn: Queries, current: Ruleset) -> None:
            mine = [r for r in current[kind] if not r.default]
            rest = [r for r in mine if r.rule_id != rule_id]
            if len(rest) == len(mine):
                raise not_found("The push rule was not found.")
            await self.store.replace_kind(txn, user_nid, kind, rest)

        await self._change(user_nid, user_id, edit)

    async def set_attribute(
        self,
        user_nid: int,
        user_id: str,
        kind: str,
        rule_id: str,
        *,
        enabled: bool | None = None,
        actions: tuple[Any, ...] | None = None,
    ) -> None:
        """Change ``enabled`` or ``actions`` of a user rule or a server-default rule."""
        check_kind(kind)

        async def edit(txn: Queries, current: Ruleset) -> None:
            rule = next((r for r in current[kind] if r.rule_id == rule_id), None)
            if rule is None:
                raise not_found("The push rule was not found.")
            if not rule.default:
                await self.store.set_user_rule(
                    txn, user_nid, kind, rule_id, enabled=enabled, actions=actions
                )
                return
            old = (await self.store.overrides(txn, user_nid)).get(rule_id, DefaultOverride())
            new = replace(
                old,
                enabled=old.enabled if enabled is None else enabled,
                actions=old.actions if actions is None else actions,
            )
            await self.store.set_default_override(txn, user_nid, rule_id, new)

        await self._change(user_nid, user_id, edit)
