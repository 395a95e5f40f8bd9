"""Change signals: how a writer says "stream S reached position P; these users care".

Writers (the room service today; typing, receipts, account data, to-device
later) publish to a ``ChangeSignal`` they get in their constructor and know
nothing about who listens. The composition root decides: in one process it
is the sync ``Notifier``, which wakes the users' long-polling /sync requests.
When Myelin runs as several processes, a second implementation publishes the
same three values across processes (for example a PostgreSQL ``NOTIFY`` on
commit, with a ``LISTEN`` loop on each worker feeding its local notifier),
and writers do not change.

A signal is a hint to look again, sent after the change is committed: it
carries no data a reader must trust, and a reader that gets it reads the
stream from its own last position. Losing one only delays a wake-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

# Stream names, as the fields of ``homeserver.streams.tokens.StreamToken``.
EVENTS = "events"


class ChangeSignal(Protocol):
    """Where writers publish "something changed"; implemented by the sync notifier."""

    def changed(self, stream: str, position: int, users: Iterable[str]) -> None:
        """``stream`` advanced to ``position`` (committed) in a way that matters to ``users``
        (user ids; a room id for requests peeking into that room without being members)."""
        ...


class SignalFanout:
    """One ``ChangeSignal`` that passes every change on to several listeners (the sync
    notifier, application-service senders); the composition root adds them."""

    def __init__(self, targets: list[ChangeSignal]) -> None:
        self.targets = targets

    def changed(self, stream: str, position: int, users: Iterable[str]) -> None:
        users = list(users)
        for target in self.targets:
            target.changed(stream, position, users)
