"""Stream tokens: opaque strings naming a position in every stream a client follows.

A sync token is ``s`` followed by one number per stream, joined by ``_``:
``s{events}`` today. New streams (to-device, account data, receipts,
typing, presence, device lists) are added by appending a field to
``StreamToken`` (and to ``COMPONENTS``): older tokens lacking it parse
with 0 there, so tokens survive upgrades and restarts (every component is a
database position). Pagination tokens for /messages are the same format,
of which only the events component is read.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from homeserver.errors import MatrixError

_MAX_COMPONENTS = 16


def invalid_token() -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", "Invalid pagination or sync token")


@dataclass(frozen=True, slots=True)
class StreamToken:
    events: int = 0

    @classmethod
    def parse(cls, text: str) -> StreamToken:
        if not text.startswith("s") or len(text) > 400:
            raise invalid_token()
        parts = text[1:].split("_")
        if len(parts) > _MAX_COMPONENTS:
            raise invalid_token()
        values: list[int] = []
        for part in parts:
            if not part.isdigit():
                raise invalid_token()
            values.append(int(part))
        names = [f.name for f in fields(cls)]
        return cls(**dict(zip(names, values, strict=False)))

    def encode(self) -> str:
        return "s" + "_".join(str(getattr(self, f.name)) for f in fields(self))

    def with_events(self, position: int) -> StreamToken:
        return replace(self, events=position)


COMPONENTS = tuple(f.name for f in fields(StreamToken))


def events_position(text: str) -> int:
    """The events component of a sync or pagination token."""
    return StreamToken.parse(text).events
