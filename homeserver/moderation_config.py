"""Configuration of moderation: the content policy and invite protection.

Kept beside ``homeserver/config.py`` (which reads them as its sections
``content_policy`` and ``invite_protection``) so that file stays small.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PolicyModuleConfig:
    """A content policy module: "package.module:ClassName" and the mapping its
    constructor receives."""

    module: str = ""
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ContentPolicyConfig:
    """Checks on events local users send to unencrypted rooms (never m.room.encrypted)."""

    # Refused as whole words, ignoring case, in any text of the event's content.
    blocked_words: list[str] = field(default_factory=list)
    # Python regular expressions, ignoring case; a match anywhere in the text refuses it.
    blocked_patterns: list[str] = field(default_factory=list)
    modules: list[PolicyModuleConfig] = field(default_factory=list)


@dataclass
class InviteProtectionConfig:
    """Invites refused server-wide: from these users, or from any user of these servers
    (server names or "*" patterns), to local users, sent here or over federation."""

    blocked_users: list[str] = field(default_factory=list)
    blocked_servers: list[str] = field(default_factory=list)
