"""Stream tokens: one opaque string naming a position in every stream a client follows.

Format (the only one; /sync, /messages, /keys/changes and /notifications parse it here)
---------------------------------------------------------------------------------------
Components joined by ``_``; each is a short lowercase name followed by its
value, which starts with a digit::

    s120_td7_dl42_ad3_rc5_pr2_ty9e3f9a0c1e

    s   events (room timelines, memberships)     td  to-device inbox
    dl  device lists                             ad  account data
    rc  receipts                                 pr  presence
    ty  typing: ``<position>e<epoch>``; the typing stream lives in memory and
        restarts with the process, so the epoch tells a stale position apart

Every component but typing is a database position, so a token survives a
restart. A component a token lacks reads as 0 (typing: stale), so tokens
written before a stream existed (``s120``) keep working: the client gets
that stream from its beginning. Unknown component names are ignored, so a
newer server's tokens do not break an older one. A bare integer (``"42"``)
is a device-list position, for tools calling ``/keys/changes``.

Pagination tokens (/messages, /context)
---------------------------------------
/messages walks a room in topological order, so the tokens it returns name
a place in that order: ``t<depth>_<stream_ordering>``, e.g. ``t12_340`` or
``t3_-17`` (backfilled history has negative stream orderings). /messages
also accepts every stream token above (a /sync ``prev_batch``): that bounds
by stream position alone. A ``t`` token given to /sync is refused (400).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from homeserver.errors import MatrixError

MAX_TOKEN_LENGTH = 512
_MAX_DIGITS = 19
_COMPONENT = re.compile(r"([a-z]+)([0-9][0-9a-z]*)")
_TYPING = re.compile(r"([0-9]{1,19})e([0-9a-f]{1,32})")
_TOPOLOGICAL = re.compile(r"t(-?[0-9]{1,18})_(-?[0-9]{1,18})")

# component name -> StreamToken field, in the order tokens are written
NUMERIC = {
    "s": "events",
    "td": "to_device",
    "dl": "device_lists",
    "ad": "account_data",
    "rc": "receipts",
    "pr": "presence",
}
TYPING = "ty"


def invalid_token(param: str = "since") -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", f"Invalid stream token in '{param}'")


@dataclass(frozen=True, slots=True)
class StreamToken:
    events: int = 0
    to_device: int = 0
    device_lists: int = 0
    account_data: int = 0
    receipts: int = 0
    presence: int = 0
    # The typing service's own token ("<epoch>.<position>"); "" means stale/absent.
    typing: str = ""

    @classmethod
    def parse(cls, text: str, param: str = "since") -> StreamToken:
        """Parse a token; 400 ``M_INVALID_PARAM`` naming ``param`` if malformed."""
        if not text or len(text) > MAX_TOKEN_LENGTH or not text.isascii():
            raise invalid_token(param)
        if text.isdigit():
            if len(text) > _MAX_DIGITS:
                raise invalid_token(param)
            return cls(device_lists=int(text))
        values: dict[str, int | str] = {}
        for part in text.split("_"):
            m = _COMPONENT.fullmatch(part)
            if m is None:
                raise invalid_token(param)
            name, value = m.group(1), m.group(2)
            if name == TYPING:
                t = _TYPING.fullmatch(value)
                if t is None:
                    raise invalid_token(param)
                values["typing"] = f"{t.group(2)}.{t.group(1)}"
            elif name in NUMERIC:
                if not value.isdigit() or len(value) > _MAX_DIGITS:
                    raise invalid_token(param)
                values[NUMERIC[name]] = int(value)
        return cls(**values)  # type: ignore[arg-type]

    def encode(self) -> str:
        parts = [f"{name}{getattr(self, field)}" for name, field in NUMERIC.items()]
        epoch, sep, pos = self.typing.partition(".")
        if sep:
            parts.append(f"{TYPING}{pos}e{epoch}")
        return "_".join(parts)

    def with_events(self, position: int) -> StreamToken:
        return replace(self, events=position)


def events_position(text: str, param: str = "from") -> int:
    """The events component of a sync or pagination token."""
    return StreamToken.parse(text, param).events


@dataclass(frozen=True, slots=True)
class TopoPosition:
    """A place in a room's topological order (depth, stream_ordering);
    ``depth`` None: a stream position, bounding by stream_ordering alone."""

    depth: int | None
    stream: int

    def encode(self) -> str:
        if self.depth is None:
            return StreamToken(events=max(0, self.stream)).encode()
        return f"t{self.depth}_{self.stream}"


def pagination_position(text: str, param: str = "from") -> TopoPosition:
    """A /messages token: topological (``t<depth>_<stream>``) or any stream token."""
    m = _TOPOLOGICAL.fullmatch(text)
    if m is not None:
        return TopoPosition(int(m.group(1)), int(m.group(2)))
    return TopoPosition(None, events_position(text, param))
