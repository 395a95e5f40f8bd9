"""Identifier checks the rules need, on top of the events core's grammar.

User ids are checked with the *historical* grammar servers must accept over
federation (``strict=False``): any localpart without ``:`` or NUL.
"""

from __future__ import annotations

from homeserver.events.identifiers import is_valid_server_name
from homeserver.events.identifiers import is_valid_user_id as _is_valid_user_id

__all__ = ["domain_of", "is_valid_server_name", "is_valid_user_id"]


def domain_of(identifier: str) -> str:
    """The server name part of a user or room id: everything after the first ``:``."""
    return identifier.partition(":")[2]


def is_valid_user_id(user_id: object) -> bool:
    """Spec appendices "User Identifiers", accepting historical localparts."""
    return isinstance(user_id, str) and _is_valid_user_id(user_id, strict=False)
