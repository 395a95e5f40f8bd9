"""Media ids and ``mxc://`` URIs (client-server "Matrix Content (mxc://) URIs").

The spec's defence against path traversal is an allow-list: a media id is
only ``A-Za-z0-9``, ``_`` and ``-``; a server name must be a valid server
name. Every id that reaches the store or the disk has passed ``check_media_id``.
"""

from __future__ import annotations

import re
import secrets

from homeserver.errors import MatrixError
from homeserver.events.identifiers import is_valid_server_name

_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]{1,255}")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def new_media_id() -> str:
    """24 random letters: about 137 bits, unguessable."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(24))


def is_valid_media_id(media_id: str) -> bool:
    return _MEDIA_ID.fullmatch(media_id) is not None


def check_media_id(server_name: str, media_id: str) -> None:
    """400 ``M_INVALID_PARAM`` unless both halves of an mxc URI are well-formed."""
    if not is_valid_server_name(server_name):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid server name in media id")
    if not is_valid_media_id(media_id):
        raise MatrixError(400, "M_INVALID_PARAM", "Invalid media id")


def mxc_uri(server_name: str, media_id: str) -> str:
    return f"mxc://{server_name}/{media_id}"


def parse_mxc(uri: str) -> tuple[str, str]:
    """``(server_name, media_id)`` of a well-formed ``mxc://`` URI, else ``ValueError``."""
    if not uri.startswith("mxc://"):
        raise ValueError("not an mxc:// URI")
    server_name, sep, media_id = uri[len("mxc://") :].partition("/")
    if not sep or not is_valid_server_name(server_name) or not is_valid_media_id(media_id):
        raise ValueError("malformed mxc:// URI")
    return server_name, media_id
