"""Identifier grammar: server names, user ids, room ids, room aliases, event ids.

Spec: appendices "Identifier Grammar" ("Server Name", "User Identifiers",
"Historical User IDs", "Room IDs", "Room Aliases", "Event IDs") and rooms
v4+ "Event IDs". Identifiers are at most 255 bytes of UTF-8. User ids from
remote servers may use the historical localpart grammar (``strict=False``);
ids we allocate use the strict one.
"""

from __future__ import annotations

import ipaddress
import re

from homeserver.events.room_versions import (
    EVENT_ID_HASH_BASE64,
    EVENT_ID_HASH_URLSAFE,
    EVENT_ID_SERVER_GENERATED,
    RoomVersion,
)

MAX_IDENTIFIER_BYTES = 255

_PORT = re.compile(r"[0-9]{1,5}\Z")
_IPV4 = re.compile(r"([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\Z")
_IPV6_CHARS = re.compile(r"[0-9A-Fa-f:.]{2,45}\Z")
_DNS_NAME = re.compile(r"[A-Za-z0-9.\-]{1,255}\Z")
_STRICT_LOCALPART = re.compile(r"[a-z0-9._=\-/+]+\Z")
# Rooms v4+ "Event IDs": "$" + URL-safe unpadded base64 of a SHA-256 (43 chars).
_HASH_ID = re.compile(r"[A-Za-z0-9_\-]{43}\Z")
_HASH_ID_STANDARD = re.compile(r"[A-Za-z0-9+/]{43}\Z")


class InvalidIdentifierError(ValueError):
    """An identifier does not match the spec's grammar."""


def _utf8_len(text: str) -> int | None:
    """Byte length as UTF-8, or ``None`` if ``text`` holds lone surrogates (not valid Unicode)."""
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _fits(identifier: str) -> bool:
    size = _utf8_len(identifier)
    return size is not None and size <= MAX_IDENTIFIER_BYTES


def is_valid_server_name(name: str) -> bool:
    """``hostname [ ":" port ]`` per appendices "Server Name"; IP literals checked for range."""
    if name.startswith("["):
        close = name.find("]")
        if close < 0:
            return False
        host, rest = name[1:close], name[close + 1 :]
        if not _IPV6_CHARS.match(host):
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
    else:
        host, sep, port = name.partition(":")
        rest = sep + port
        ipv4 = _IPV4.match(host)
        if ipv4 is not None:
            if any(int(octet) > 255 for octet in ipv4.groups()):
                return False
        elif not _DNS_NAME.match(host):
            return False
    if not rest:
        return True
    return rest[0] == ":" and _PORT.match(rest[1:]) is not None


def is_valid_localpart(localpart: str, strict: bool = True) -> bool:
    """User id localpart grammar (appendices "User Identifiers").

    ``strict``: non-empty, only ``a-z 0-9 . _ = - / +``. Otherwise the
    historical grammar remote users may still have: any Unicode except ``:``
    and NUL, possibly empty ("Historical User IDs").
    """
    if strict:
        return _STRICT_LOCALPART.match(localpart) is not None
    return _is_opaque_localpart(localpart)


def _is_opaque_localpart(localpart: str) -> bool:
    """Any non-surrogate code points except ``:`` and NUL (room id / alias localparts too)."""
    return ":" not in localpart and "\x00" not in localpart and _utf8_len(localpart) is not None


def _split_sigil_id(identifier: str, sigil: str) -> tuple[str, str] | None:
    """``<sigil>localpart:domain`` -> (localpart, domain), split at the first ``:``."""
    if not identifier.startswith(sigil):
        return None
    localpart, sep, domain = identifier[1:].partition(":")
    return (localpart, domain) if sep else None


def is_valid_user_id(user_id: str, strict: bool = True) -> bool:
    """``@localpart:server_name``, at most 255 bytes (appendices "User Identifiers")."""
    parts = _split_sigil_id(user_id, "@")
    return (
        parts is not None
        and _fits(user_id)
        and is_valid_localpart(parts[0], strict)
        and is_valid_server_name(parts[1])
    )


def parse_user_id(user_id: str, strict: bool = False) -> tuple[str, str]:
    """Split a user id into (localpart, server name); ``InvalidIdentifierError`` if malformed.

    Lenient by default: any user id that may appear as an event ``sender``.
    """
    if not is_valid_user_id(user_id, strict):
        raise InvalidIdentifierError(f"invalid user id {user_id!r}")
    localpart, _, server_name = user_id[1:].partition(":")
    return localpart, server_name


def is_valid_room_alias(alias: str) -> bool:
    """``#localpart:server_name``, at most 255 bytes (appendices "Room Aliases")."""
    parts = _split_sigil_id(alias, "#")
    return (
        parts is not None
        and _fits(alias)
        and _is_opaque_localpart(parts[0])
        and is_valid_server_name(parts[1])
    )


def is_valid_event_id(event_id: str, room_version: RoomVersion | None = None) -> bool:
    """Event id grammar of ``room_version``, or of any version when it is None.

    v4+: ``$`` + 43 URL-safe base64 characters (a SHA-256); v3: the same in
    standard base64; v1-v2: ``$opaque_id:server_name`` (rooms v1 "Event IDs").
    """
    if not event_id.startswith("$"):
        return False
    fmt = None if room_version is None else room_version.event_id_format
    if fmt in (None, EVENT_ID_HASH_URLSAFE) and _HASH_ID.match(event_id, 1) is not None:
        return True
    if fmt in (None, EVENT_ID_HASH_BASE64) and _HASH_ID_STANDARD.match(event_id, 1) is not None:
        return True
    if fmt in (None, EVENT_ID_SERVER_GENERATED):
        opaque, sep, server = event_id[1:].partition(":")
        return bool(opaque) and bool(sep) and _fits(event_id) and is_valid_server_name(server)
    return False


def is_valid_room_id(room_id: str, room_version: RoomVersion) -> bool:
    """Room id grammar (appendices "Room IDs").

    Where the version derives room ids from the create event (v12) it is
    that event's id with ``!`` as sigil; otherwise ``!localpart:server_name``.
    """
    if room_version.room_id_from_create_event:
        return room_id.startswith("!") and _HASH_ID.match(room_id, 1) is not None
    parts = _split_sigil_id(room_id, "!")
    return (
        parts is not None
        and _fits(room_id)
        and _is_opaque_localpart(parts[0])
        and is_valid_server_name(parts[1])
    )
