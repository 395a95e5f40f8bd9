"""Pure push rule evaluation (spec: "Push Rules": Conditions, Actions).

``evaluate`` walks the rules in priority order and returns the actions of
the first enabled rule whose conditions all hold, or ``None`` when no rule
matches. Unrecognised condition kinds never match (spec: they effectively
disable the rule). The room facts a condition needs (member count, the
sender's power level, the ``notifications`` power levels, the user's display
name in the room) come in a ``PushContext``, so the evaluator does no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from homeserver.events.paths import glob_in_words, glob_matches, is_missing, lookup
from homeserver.push.rules import PushRule
from homeserver.rooms.auth.power_levels import Power

_MAX_SAFE = 2**53 - 1
_IS = re.compile(r"^(==|<=|>=|<|>)?([0-9]+)$")


@dataclass(frozen=True, slots=True)
class PushContext:
    user_id: str
    member_count: int
    display_name: str | None = None
    # From ``rooms.auth.power_levels.user_power_level``: v12 creators are infinite.
    sender_power_level: Power = 0
    notification_levels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Outcome:
    rule_id: str
    actions: tuple[Any, ...]

    @property
    def notify(self) -> bool:
        return "notify" in self.actions

    @property
    def highlight(self) -> bool:
        value = tweaks(self.actions).get("highlight", False)
        return value is True

    @property
    def sound(self) -> str | None:
        value = tweaks(self.actions).get("sound")
        return value if isinstance(value, str) else None


def tweaks(actions: Sequence[Any]) -> dict[str, Any]:
    """The ``set_tweak`` entries of ``actions``; ``highlight`` without a value is ``true``."""
    out: dict[str, Any] = {}
    for action in actions:
        if isinstance(action, Mapping) and isinstance(action.get("set_tweak"), str):
            name = action["set_tweak"]
            if "value" in action:
                out[name] = action["value"]
            elif name == "highlight":
                out[name] = True
    return out


def _scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE <= value <= _MAX_SAFE


def _same(a: Any, b: Any) -> bool:
    """Exact equality without casting (``1`` is not ``true``)."""
    return type(a) is type(b) and a == b


def event_match(cond: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return False
    value = lookup(event, key)
    if not isinstance(value, str):
        return False
    if key == "content.body":
        return glob_in_words(pattern, value)
    return glob_matches(pattern, value)


def event_property_is(cond: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    key = cond.get("key")
    if not isinstance(key, str) or "value" not in cond or not _scalar(cond["value"]):
        return False
    value = lookup(event, key)
    return not is_missing(value) and _scalar(value) and _same(value, cond["value"])


def event_property_contains(cond: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    key = cond.get("key")
    if not isinstance(key, str) or "value" not in cond or not _scalar(cond["value"]):
        return False
    value = lookup(event, key)
    if not isinstance(value, list):
        return False
    wanted = cond["value"]
    return any(_scalar(v) and _same(v, wanted) for v in value)


def contains_display_name(event: Mapping[str, Any], ctx: PushContext) -> bool:
    if not ctx.display_name:
        return False
    body = lookup(event, "content.body")
    if not isinstance(body, str):
        return False
    return _display_name_regex(ctx.display_name).search(body) is not None


@lru_cache(maxsize=8192)
def _display_name_regex(name: str) -> re.Pattern[str]:
    """Compiled once per name: every message in a big room checks every member's name,
    more names than ``re``'s own cache of 512 patterns holds."""
    literal = re.escape(name)
    return re.compile(rf"(?<![A-Za-z0-9_]){literal}(?![A-Za-z0-9_])", re.IGNORECASE)


def room_member_count(cond: Mapping[str, Any], ctx: PushContext) -> bool:
    raw = cond.get("is")
    if not isinstance(raw, str):
        return False
    m = _IS.match(raw)
    if m is None:
        return False
    op, n = m.group(1) or "==", int(m.group(2))
    count = ctx.member_count
    return {
        "==": count == n,
        "<": count < n,
        ">": count > n,
        "<=": count <= n,
        ">=": count >= n,
    }[op]


def sender_notification_permission(cond: Mapping[str, Any], ctx: PushContext) -> bool:
    key = cond.get("key")
    if not isinstance(key, str):
        return False
    required = ctx.notification_levels.get(key, 50)
    return ctx.sender_power_level >= required


def condition_holds(cond: Mapping[str, Any], event: Mapping[str, Any], ctx: PushContext) -> bool:
    kind = cond.get("kind")
    if kind == "event_match":
        return event_match(cond, event)
    if kind == "event_property_is":
        return event_property_is(cond, event)
    if kind == "event_property_contains":
        return event_property_contains(cond, event)
    if kind == "contains_display_name":
        return contains_display_name(event, ctx)
    if kind == "room_member_count":
        return room_member_count(cond, ctx)
    if kind == "sender_notification_permission":
        return sender_notification_permission(cond, ctx)
    return False


def condition_key(cond: Mapping[str, Any], ctx: PushContext) -> Hashable:
    """What a condition's outcome depends on besides the event, for ``Memo``.

    Within one event and room, only ``contains_display_name`` depends on the user (through
    the display name); every other condition depends on its own fields (a user-specific
    pattern such as the user's id is part of them) and on facts shared by all members.
    """
    kind = cond.get("kind")
    if kind == "contains_display_name":
        return (kind, ctx.display_name)
    parts: list[Hashable] = [kind]
    for name in ("key", "pattern", "is"):
        v = cond.get(name)
        parts.append(v if isinstance(v, str) else None if v is None else repr(v))
    if "value" in cond:
        v = cond["value"]
        parts.append((type(v).__name__, v if _scalar(v) else repr(v)))
    return tuple(parts)


Memo = dict[Hashable, bool]


def rule_matches(
    rule: PushRule, event: Mapping[str, Any], ctx: PushContext, memo: Memo | None = None
) -> bool:
    if not rule.enabled:
        return False
    for c in rule.effective_conditions():
        if memo is None:
            holds = condition_holds(c, event, ctx)
        else:
            key = condition_key(c, ctx)
            cached = memo.get(key)
            if cached is None:
                cached = memo[key] = condition_holds(c, event, ctx)
            holds = cached
        if not holds:
            return False
    return True


def evaluate(
    rules: Sequence[PushRule],
    event: Mapping[str, Any],
    ctx: PushContext,
    memo: Memo | None = None,
) -> Outcome | None:
    """The first matching rule's actions for ``ctx.user_id``, or ``None``.

    Events the user sent themselves never notify (spec: "Homeservers MUST
    NOT notify the Push Gateway for events that the user has sent themselves").

    ``memo`` (one per event, shared across the room's members, whose ``member_count``,
    ``sender_power_level`` and ``notification_levels`` must then be the same) keeps each
    condition's outcome, so a big room evaluates each distinct condition once per event.
    """
    if event.get("sender") == ctx.user_id:
        return None
    for rule in rules:
        if rule_matches(rule, event, ctx, memo):
            return Outcome(rule.rule_id, rule.actions)
    return None
