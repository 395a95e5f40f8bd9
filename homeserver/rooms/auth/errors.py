"""The one exception the authorisation rules raise."""

from __future__ import annotations


class AuthError(Exception):
    """An event is not authorised (spec: "Authorisation rules").

    ``reason`` is a short human sentence naming the failed rule. It never
    contains event content, only the rule and, at most, user ids.
    """

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
