"""Content policy modules the moderation tests load by name from the config
("tests.integration.policy_modules:FlagWord"), as an operator's own module is."""

from __future__ import annotations

from typing import Any

from homeserver.rooms.content_policy import Verdict


class FlagWord:
    """Flags (stores, but reports) messages containing ``config["word"]``."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.word = str(config["word"])

    async def check_event(self, event: dict[str, Any]) -> Verdict:
        body = event.get("content", {}).get("body")
        if isinstance(body, str) and self.word in body:
            return Verdict.flag(f"mentions {self.word}")
        return Verdict.accept()


class NeedsSetting:
    """Refuses to start without ``config["setting"]`` (a module's own config error)."""

    def __init__(self, config: dict[str, Any]) -> None:
        if "setting" not in config:
            raise ValueError("setting is required")

    async def check_event(self, event: dict[str, Any]) -> Verdict:
        return Verdict.accept()
