"""Identifier checks the rules need (spec appendices: user ids, server names).

User ids are checked with the *historical* grammar servers must accept over
federation: any localpart without ``:`` or NUL, a valid server name, at most
255 bytes in all.
"""

from __future__ import annotations

import re
from typing import Final

_MAX_USER_ID_BYTES: Final = 255
# server_name = hostname [ ":" port ]; hostname = IPv4 / "[" IPv6 "]" / dns-name.
# An IPv4 literal is also a dns-name by this grammar, so two branches suffice.
_SERVER_NAME: Final = re.compile(
    r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[0-9A-Za-z.-]{1,255})(?::[0-9]{1,5})?"
)


def domain_of(identifier: str) -> str:
    """The server name part of a user or room id: everything after the first ``:``."""
    return identifier.partition(":")[2]


def is_valid_server_name(name: str) -> bool:
    """Spec appendices "Server Name" grammar."""
    return _SERVER_NAME.fullmatch(name) is not None


def is_valid_user_id(user_id: object) -> bool:
    """Spec appendices "User Identifiers", accepting historical localparts."""
    if not isinstance(user_id, str) or not user_id.startswith("@"):
        return False
    if len(user_id.encode("utf-8", "surrogatepass")) > _MAX_USER_ID_BYTES:
        return False
    localpart, sep, server = user_id[1:].partition(":")
    if not sep or "\x00" in localpart:
        return False
    if any("\ud800" <= ch <= "\udfff" for ch in localpart):
        return False
    return is_valid_server_name(server)
