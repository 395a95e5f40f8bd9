"""Content policy: checks on what local users send to rooms the server can read.

What it sees
------------
Only events built by this server for its own users, before they are stored
(``RoomService.create_and_send``, the one way in for local events). It never
inspects ``m.room.encrypted`` events: their content is ciphertext the server
cannot read, so in an encrypted room a policy sees nothing of what is said.
Leaving and banning (``m.room.member`` with ``leave`` or ``ban``) are never
refused, so nobody is kept in a room and moderators can always act.

Events from other servers are not checked: they are signed by their origin
and may already be in other servers' copies of the room; refusing them here
would split this server's view of the room from everyone else's. Use the
federation deny list, bans and reports for what comes from elsewhere.

The interface
-------------
A policy module is a class named in the config as ``"package.module:Class"``.
It is built once at start-up as ``Class(config)`` (``config``: the mapping
given next to it in the YAML) and must have::

    async def check_event(self, event: dict[str, Any]) -> Verdict

``event`` holds ``type``, ``room_id``, ``sender``, ``content`` and, for
state events, ``state_key`` (the event is not built yet, so it has no id).
Return ``Verdict.accept()``, ``Verdict.reject(reason)`` (the client gets 403
``M_FORBIDDEN`` naming the reason) or ``Verdict.flag(reason)`` (the event is
stored and an event report, visible in the admin API's event reports, is
filed with the reason). The first module that rejects decides; an exception
in a module refuses the event (fail closed) and is logged without content.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from homeserver.config import ConfigError
from homeserver.errors import forbidden
from homeserver.moderation_config import ContentPolicyConfig

log = logging.getLogger("myelin.content_policy")

ENCRYPTED = "m.room.encrypted"
MAX_TEXT_DEPTH = 20


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a policy decided: ``action`` is accept, reject or flag."""

    action: str
    reason: str | None = None

    @staticmethod
    def accept() -> Verdict:
        return Verdict("accept")

    @staticmethod
    def reject(reason: str) -> Verdict:
        return Verdict("reject", reason)

    @staticmethod
    def flag(reason: str) -> Verdict:
        return Verdict("flag", reason)


class PolicyModule(Protocol):
    async def check_event(self, event: dict[str, Any]) -> Verdict: ...


def text_of(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in a JSON value (keys excluded), depth-bounded."""
    if depth > MAX_TEXT_DEPTH:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from text_of(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            yield from text_of(v, depth + 1)


class BlockList:
    """The built-in policy: ``blocked_words`` (whole words, any case) and
    ``blocked_patterns`` (regular expressions, any case) over the content's text."""

    def __init__(self, words: list[str], patterns: list[str]) -> None:
        self._checks: list[tuple[re.Pattern[str], str]] = []
        for word in words:
            regex = re.compile(r"(?<!\w)" + re.escape(word.strip()) + r"(?!\w)", re.IGNORECASE)
            self._checks.append((regex, "a blocked word"))
        for pattern in patterns:
            self._checks.append((re.compile(pattern, re.IGNORECASE), "a blocked pattern"))

    async def check_event(self, event: dict[str, Any]) -> Verdict:
        for text in text_of(event.get("content")):
            for regex, what in self._checks:
                if regex.search(text):
                    return Verdict.reject(f"The message contains {what} of this server's policy")
        return Verdict.accept()


def load_module(spec: str, config: dict[str, Any], where: str) -> PolicyModule:
    """Import ``package.module:Class`` and build it; any failure is a ConfigError."""
    path, _, name = spec.partition(":")
    try:
        module = importlib.import_module(path)
    except Exception as e:
        raise ConfigError(f"{where}: cannot import {path!r}: {type(e).__name__}: {e}") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ConfigError(f"{where}: {path!r} has no {name!r}")
    try:
        instance = cls(config)
    except Exception as e:
        raise ConfigError(f"{where}: {spec} failed to start: {type(e).__name__}: {e}") from None
    check = getattr(instance, "check_event", None)
    if check is None or not callable(check):
        raise ConfigError(f"{where}: {spec} has no check_event method")
    return instance  # type: ignore[no-any-return]


# (room id, event id, reason): files an event report for the admins.
FileReport = Callable[[str, str, str], Awaitable[None]]


class ContentPolicy:
    def __init__(self, modules: list[PolicyModule]) -> None:
        self.modules = modules
        # Set by the composition root (the reports table).
        self.file_report: FileReport | None = None

    @classmethod
    def from_config(cls, config: ContentPolicyConfig) -> ContentPolicy:
        modules: list[PolicyModule] = []
        if config.blocked_words or config.blocked_patterns:
            modules.append(BlockList(config.blocked_words, config.blocked_patterns))
        for i, mod in enumerate(config.modules):
            modules.append(load_module(mod.module, mod.config, f"content_policy.modules[{i}]"))
        return cls(modules)

    @staticmethod
    def applies_to(event_type: str, content: dict[str, Any]) -> bool:
        """Encrypted events are never inspected; leaves and bans are never refused."""
        if event_type == ENCRYPTED:
            return False
        if event_type == "m.room.member" and content.get("membership") in ("leave", "ban"):
            return False
        return True

    async def check_local(
        self,
        server_name: str,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None,
    ) -> Verdict:
        """The verdict on an event a local user is about to send; raises 403 on reject."""
        if not self.modules or not sender.endswith(":" + server_name):
            return Verdict.accept()
        draft: dict[str, Any] = {
            "type": event_type,
            "room_id": room_id,
            "sender": sender,
            "content": content,
        }
        if state_key is not None:
            draft["state_key"] = state_key
        verdict = await self.check(draft)
        if verdict.action == "reject":
            raise forbidden(verdict.reason or "Refused by this server's content policy")
        return verdict

    async def settle(self, verdict: Verdict, room_id: str, event_id: str) -> None:
        """After the event is stored: a flag files its report (a failure is logged;
        the event stays sent)."""
        if verdict.action != "flag" or self.file_report is None:
            return
        try:
            await self.file_report(room_id, event_id, verdict.reason or "flagged")
        except Exception:
            log.exception("could not file a content policy report")

    async def check(self, event: dict[str, Any]) -> Verdict:
        """The combined verdict: the first reject wins, else the first flag, else accept."""
        if not self.modules or not self.applies_to(event["type"], event.get("content") or {}):
            return Verdict.accept()
        flagged: Verdict | None = None
        for module in self.modules:
            try:
                verdict = await module.check_event(event)
            except Exception:
                log.exception("content policy module %s failed", type(module).__name__)
                return Verdict.reject("The server's content policy could not check this event")
            if not isinstance(verdict, Verdict) or verdict.action not in (
                "accept",
                "reject",
                "flag",
            ):
                log.error("content policy module %s gave no Verdict", type(module).__name__)
                return Verdict.reject("The server's content policy could not check this event")
            if verdict.action == "reject":
                return verdict
            if verdict.action == "flag" and flagged is None:
                flagged = verdict
        return flagged or Verdict.accept()
