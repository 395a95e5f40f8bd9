"""Push rule model and the spec's server-default rules (spec: "Predefined Rules", v1.17).

The legacy body-matching defaults (``.m.rule.contains_user_name``,
``.m.rule.contains_display_name``, ``.m.rule.roomnotif``) were removed in
v1.17 and are not here. Defaults that name "[the user's Matrix ID]" are
instantiated per user by ``default_rules``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

KINDS = ("override", "content", "room", "sender", "underride")
MASTER = ".m.rule.master"
_USER = "[the user's Matrix ID]"

_SOUND_DEFAULT: dict[str, Any] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: dict[str, Any] = {"set_tweak": "highlight"}


@dataclass(frozen=True, slots=True)
class PushRule:
    kind: str
    rule_id: str
    actions: tuple[Any, ...]
    default: bool = False
    enabled: bool = True
    conditions: tuple[dict[str, Any], ...] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec's ``PushRule`` object."""
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
            "actions": list(self.actions),
        }
        if self.kind in ("override", "underride"):
            out["conditions"] = list(self.conditions or ())
        if self.kind == "content" and self.pattern is not None:
            out["pattern"] = self.pattern
        return out

    def effective_conditions(self) -> tuple[dict[str, Any], ...]:
        """The conditions the rule's kind implies (room, sender, content rules have none)."""
        if self.kind == "room":
            return ({"kind": "event_match", "key": "room_id", "pattern": self.rule_id},)
        if self.kind == "sender":
            return ({"kind": "event_match", "key": "sender", "pattern": self.rule_id},)
        if self.kind == "content":
            if self.pattern is None:
                return ({"kind": "never"},)
            return ({"kind": "event_match", "key": "content.body", "pattern": self.pattern},)
        return self.conditions or ()


def _match(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(
    kind: str, rule_id: str, conditions: list[dict[str, Any]], actions: list[Any]
) -> PushRule:
    return PushRule(kind, rule_id, tuple(actions), True, True, tuple(conditions))


_DEFAULT_OVERRIDE = (
    replace(_rule("override", MASTER, [], []), enabled=False),
    _rule("override", ".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(
        "override",
        ".m.rule.invite_for_me",
        [
            _match("type", "m.room.member"),
            _match("content.membership", "invite"),
            _match("state_key", _USER),
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule("override", ".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(
        "override",
        ".m.rule.is_user_mention",
        [
            {
                "kind": "event_property_contains",
                "key": "content.m\\.mentions.user_ids",
                "value": _USER,
            }
        ],
        ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    ),
    _rule(
        "override",
        ".m.rule.is_room_mention",
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        ["notify", _HIGHLIGHT],
    ),
    _rule(
        "override",
        ".m.rule.tombstone",
        [_match("type", "m.room.tombstone"), _match("state_key", "")],
        ["notify", _HIGHLIGHT],
    ),
    _rule("override", ".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(
        "override",
        ".m.rule.room.server_acl",
        [_match("type", "m.room.server_acl"), _match("state_key", "")],
        [],
    ),
    _rule(
        "override",
        ".m.rule.suppress_edits",
        [
            {
                "kind": "event_property_is",
                "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace",
            }
        ],
        [],
    ),
)

_ONE_TO_ONE = {"kind": "room_member_count", "is": "2"}
_DEFAULT_UNDERRIDE = (
    _rule(
        "underride",
        ".m.rule.call",
        [_match("type", "m.call.invite")],
        ["notify", {"set_tweak": "sound", "value": "ring"}],
    ),
    _rule(
        "underride",
        ".m.rule.encrypted_room_one_to_one",
        [_ONE_TO_ONE, _match("type", "m.room.encrypted")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(
        "underride",
        ".m.rule.room_one_to_one",
        [_ONE_TO_ONE, _match("type", "m.room.message")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule("underride", ".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule("underride", ".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
)

DEFAULT_RULE_IDS: dict[str, str] = {
    r.rule_id: r.kind for r in (*_DEFAULT_OVERRIDE, *_DEFAULT_UNDERRIDE)
}


def _for_user(rule: PushRule, user_id: str) -> PushRule:
    # A rule that does not name the user is shared by every user's ruleset: cached
    # rulesets then cost memory only for the few rules that do (one per cached user).
    if not rule.conditions or not any(_USER in c.values() for c in rule.conditions):
        return rule
    conds = tuple(
        {k: (user_id if v == _USER else v) for k, v in c.items()} for c in rule.conditions
    )
    return replace(rule, conditions=conds)


def default_rules(user_id: str) -> dict[str, list[PushRule]]:
    """The server-default rules of each kind, in priority order, for ``user_id``."""
    return {
        "override": [_for_user(r, user_id) for r in _DEFAULT_OVERRIDE],
        "content": [],
        "room": [],
        "sender": [],
        "underride": [_for_user(r, user_id) for r in _DEFAULT_UNDERRIDE],
    }


@dataclass(frozen=True, slots=True)
class DefaultOverride:
    """A user's change to a server-default rule: ``None`` keeps the default."""

    enabled: bool | None = None
    actions: tuple[Any, ...] | None = None


def build_ruleset(
    user_id: str,
    user_rules: dict[str, list[PushRule]],
    overrides: dict[str, DefaultOverride],
) -> dict[str, list[PushRule]]:
    """Merge user rules (already in priority order) with the defaults, per kind.

    Spec: server-default rules rank below user-defined rules of the same kind,
    except ``.m.rule.master``, which ranks above everything.
    """
    defaults = default_rules(user_id)
    out: dict[str, list[PushRule]] = {}
    for kind in KINDS:
        merged: list[PushRule] = []
        for rule in defaults[kind]:
            o = overrides.get(rule.rule_id)
            if o is not None:
                rule = replace(
                    rule,
                    enabled=rule.enabled if o.enabled is None else o.enabled,
                    actions=rule.actions if o.actions is None else o.actions,
                )
            merged.append(rule)
        head = [r for r in merged if r.rule_id == MASTER]
        tail = [r for r in merged if r.rule_id != MASTER]
        out[kind] = [*head, *user_rules.get(kind, []), *tail]
    return out


def ordered(ruleset: dict[str, list[PushRule]]) -> list[PushRule]:
    """Every rule in evaluation order (override, content, room, sender, underride)."""
    return [rule for kind in KINDS for rule in ruleset[kind]]


def ruleset_json(ruleset: dict[str, list[PushRule]]) -> dict[str, Any]:
    """The spec's ``Ruleset`` object."""
    return {kind: [r.to_json() for r in ruleset[kind]] for kind in KINDS}
