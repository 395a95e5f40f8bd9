"""The redaction algorithm: what of an event survives a redaction.

Spec: rooms "Redactions": fragments v1-redactions (v1-v5), v6-redactions
(v6-v7: no ``m.room.aliases``), rooms/v8 (join rules ``allow``),
v9-redactions (v9-v10: ``join_authorised_via_users_server``) and
v11-redactions (v11+), selected by the room version's flags. Hashes,
signatures and event ids are all computed over the redacted form, so these
lists must match the spec byte for
byte: a wrong key here changes every event id in the room.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion

# Top-level keys kept by the v1-v10 algorithms (fragments v1/v6/v9-redactions).
_TOP_LEVEL_V10 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "prev_state",
        "auth_events",
        "origin",
        "origin_server_ts",
        "membership",
    }
)
# v11 stops protecting origin, membership and prev_state (fragment v11-redactions).
_TOP_LEVEL_V11 = _TOP_LEVEL_V10 - {"origin", "membership", "prev_state"}

_POWER_LEVELS_V10 = frozenset(
    {"ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"}
)

# Content keys kept per event type. ``None`` means "keep all of content".
_CONTENT_V10: dict[str, frozenset[str] | None] = {
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    "m.room.create": frozenset({"creator"}),
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
    "m.room.power_levels": _POWER_LEVELS_V10,
    "m.room.history_visibility": frozenset({"history_visibility"}),
}
_CONTENT_V11: dict[str, frozenset[str] | None] = {
    # third_party_invite is handled separately: only its "signed" key survives.
    "m.room.member": frozenset({"membership", "join_authorised_via_users_server"}),
    # v11: all of create content, so v12's additional_creators survives too.
    "m.room.create": None,
    "m.room.join_rules": frozenset({"join_rule", "allow"}),
    "m.room.power_levels": _POWER_LEVELS_V10 | {"invite"},
    "m.room.history_visibility": frozenset({"history_visibility"}),
    "m.room.redaction": frozenset({"redacts"}),
}


def _content_rules_before_v11(rv: RoomVersion) -> dict[str, frozenset[str] | None]:
    """The per-type content keys of versions 1-10, from the version flags."""
    rules = dict(_CONTENT_V10)
    if not rv.redaction_keeps_authorising_user:  # before v9
        rules["m.room.member"] = frozenset({"membership"})
    if not rv.restricted_join:  # before v8
        rules["m.room.join_rules"] = frozenset({"join_rule"})
    if rv.special_case_aliases_auth:  # v1-v5
        rules["m.room.aliases"] = frozenset({"aliases"})
    return rules


_CONTENT_BY_VERSION: dict[str, dict[str, frozenset[str] | None]] = {
    rv.identifier: _CONTENT_V11 if rv.updated_redaction_rules else _content_rules_before_v11(rv)
    for rv in KNOWN_ROOM_VERSIONS.values()
}


def redact(pdu: dict[str, Any], room_version: RoomVersion) -> dict[str, Any]:
    """Return the redacted form of ``pdu`` (rooms "Redactions"); ``pdu`` is not modified.

    The result is a new top-level dict and a new ``content`` dict; nested
    values are shared with ``pdu`` rather than deep-copied, so treat the
    result as read-only (it is fed straight to hashing and signing).
    """
    top_level = _TOP_LEVEL_V11 if room_version.updated_redaction_rules else _TOP_LEVEL_V10
    content_keys = _CONTENT_BY_VERSION.get(room_version.identifier)
    if content_keys is None:  # a version built outside the table (tests)
        content_keys = (
            _CONTENT_V11
            if room_version.updated_redaction_rules
            else _content_rules_before_v11(room_version)
        )

    redacted = {k: v for k, v in pdu.items() if k in top_level}
    content = pdu.get("content")
    if not isinstance(content, dict):
        # Not an object: nothing can be kept. (Format checks reject such PDUs.)
        redacted["content"] = {}
        return redacted

    event_type = pdu.get("type")
    keep = content_keys.get(event_type, frozenset()) if isinstance(event_type, str) else frozenset()
    if keep is None:
        redacted["content"] = dict(content)
        return redacted

    new_content = {k: v for k, v in content.items() if k in keep}
    if room_version.updated_redaction_rules and event_type == "m.room.member":
        _keep_third_party_invite_signed(content, new_content)
    redacted["content"] = new_content
    return redacted


def _keep_third_party_invite_signed(content: dict[str, Any], new_content: dict[str, Any]) -> None:
    """v11+: ``third_party_invite`` survives, reduced to its ``signed`` key (MSC3821).

    Auth rules need ``signed`` to re-check a redacted third-party invite.
    """
    invite = content.get("third_party_invite")
    if not isinstance(invite, dict):
        return
    new_content["third_party_invite"] = {"signed": invite["signed"]} if "signed" in invite else {}
