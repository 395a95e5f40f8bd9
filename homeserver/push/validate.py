"""Checks of client-supplied push rules (spec: ``PUT /pushrules/global/{kind}/{ruleId}``)."""

from __future__ import annotations

from typing import Any

from homeserver.errors import bad_json, invalid_param, missing_param
from homeserver.push.rules import DEFAULT_RULE_IDS, KINDS

_KNOWN_STRING_ACTIONS = frozenset({"notify", "dont_notify", "coalesce"})


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise invalid_param(f"Unknown push rule kind; expected one of {', '.join(KINDS)}")


def check_new_rule_id(rule_id: str) -> None:
    """Spec: ids starting with '.' are reserved for server-default rules; no '/' or '\\'."""
    if rule_id.startswith("."):
        raise invalid_param("Rule ids starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise invalid_param("Rule ids may not contain '/' or '\\'")


def is_default(kind: str, rule_id: str) -> bool:
    return DEFAULT_RULE_IDS.get(rule_id) == kind


def parse_actions(raw: Any) -> tuple[Any, ...]:
    """Validate ``actions``, kept as given: the historical ``dont_notify`` and
    ``coalesce`` are no-ops to the evaluator (spec: "Historical Actions": ignored, not
    rejected), and a client reads back what it set (as from Synapse)."""
    if not isinstance(raw, list):
        raise bad_json("'actions' must be an array")
    for action in raw:
        if isinstance(action, str):
            if action not in _KNOWN_STRING_ACTIONS:
                raise bad_json("Unrecognised action in 'actions'")
        elif isinstance(action, dict):
            if not isinstance(action.get("set_tweak"), str):
                raise bad_json("An object action needs a string 'set_tweak'")
        else:
            raise bad_json("Every action must be a string or an object")
    return tuple(raw)


def parse_conditions(raw: Any) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad_json("'conditions' must be an array")
    for cond in raw:
        if not isinstance(cond, dict) or not isinstance(cond.get("kind"), str):
            raise bad_json("Every condition must be an object with a string 'kind'")
    return tuple(raw)


def parse_pattern(kind: str, body: dict[str, Any]) -> str | None:
    if kind != "content":
        return None
    pattern = body.get("pattern")
    if pattern is None:
        raise missing_param("Content rules need a 'pattern'")
    if not isinstance(pattern, str):
        raise bad_json("'pattern' must be a string")
    return pattern
