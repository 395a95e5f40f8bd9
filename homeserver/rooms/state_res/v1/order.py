"""The two orders of state resolution v1 (rooms/v1.md "State resolution").

Auth-affecting conflicts are walked by ascending ``depth`` then descending
``sha1(event_id)``; other conflicts pick the highest ``depth`` then lowest
``sha1(event_id)``, which is the reverse of the same order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from homeserver.events.model import Event


def _sha1(event: Event) -> str:
    return hashlib.sha1(event.event_id.encode("utf-8"), usedforsecurity=False).hexdigest()


def by_highest_depth_lowest_sha1(events: Iterable[Event]) -> list[Event]:
    """Descending ``depth``, then ascending ``sha1(event_id)``."""
    return sorted(events, key=lambda e: (-e.depth, _sha1(e)))


def by_lowest_depth_highest_sha1(events: Iterable[Event]) -> list[Event]:
    """Ascending ``depth``, then descending ``sha1(event_id)``."""
    return list(reversed(by_highest_depth_lowest_sha1(events)))
