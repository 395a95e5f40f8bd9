"""Stream positions inside /sync tokens, as e2ee reads them.

Convention (shared with the sync builder)
-----------------------------------------
A /sync ``next_batch`` token is an opaque string of components joined by
``_``. Each component is a short lowercase name followed by a non-negative
integer, e.g. ``s120_dl42_td7``. The end-to-end encryption streams use:

* ``dl<n>`` -- position in the device-list stream (``device_lists.changed``,
  ``GET /keys/changes``);
* ``td<n>`` -- position in the to-device stream (``to_device``).

A bare integer (``"42"``) is also accepted as a device-list position, so
tests and tools can use plain numbers. Components this module does not
know are ignored, so the sync builder can add its own freely.

``stream_component(token, "dl")`` parses one component;
``format_component("dl", n)`` writes one.
"""

from __future__ import annotations

import re

from homeserver.errors import MatrixError

DEVICE_LISTS = "dl"
TO_DEVICE = "td"

_COMPONENT = re.compile(r"([a-z]+)(\d{1,19})")
MAX_TOKEN_LENGTH = 512


def invalid_token(what: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", f"Invalid stream token in '{what}'")


def format_component(name: str, pos: int) -> str:
    """One token component, e.g. ``format_component("dl", 42) == "dl42"``."""
    return f"{name}{pos}"


def stream_component(token: str, name: str, *, param: str = "token") -> int:
    """The position named ``name`` in a sync token; 0 when the token lacks it.

    A bare integer counts as the device-list position. A malformed token
    raises 400 ``M_INVALID_PARAM`` naming ``param``.
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise invalid_token(param)
    if token.isdigit():
        if len(token) > 19:
            raise invalid_token(param)
        return int(token) if name == DEVICE_LISTS else 0
    found = 0
    for part in token.split("_"):
        m = _COMPONENT.fullmatch(part)
        if m is None:
            raise invalid_token(param)
        if m.group(1) == name:
            found = int(m.group(2))
    return found
