"""Headers for serving media safely (client-server "Serving inline content").

Pure functions. Media is served with the uploader's ``Content-Type`` (never a
guess), ``inline`` only for the spec's short list of types that browsers
will not run as a page, ``attachment`` for everything else, and a sandboxing
Content-Security-Policy in every case.
"""

from __future__ import annotations

import re
from urllib.parse import quote

INLINE_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf;"
    " style-src 'unsafe-inline'; media-src 'self'; object-src 'self';"
)
DEFAULT_TYPE = "application/octet-stream"
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_PARAM_VALUE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+|\"[^\"\\\x00-\x1f\x7f]*\"")


def clean_content_type(value: str | None) -> str:
    """A well-formed ``type/subtype[; params]`` from the uploader, else octet-stream.

    The value is echoed back to browsers; anything that is not plainly a
    media type (line breaks, stray characters) becomes the neutral default.
    """
    if not value:
        return DEFAULT_TYPE
    essence, _, rest = value.partition(";")
    kind, slash, sub = essence.strip().partition("/")
    if not slash or not _TOKEN.fullmatch(kind) or not _TOKEN.fullmatch(sub):
        return DEFAULT_TYPE
    params = []
    for raw in rest.split(";") if rest else []:
        name, eq, val = raw.strip().partition("=")
        if not eq or not _TOKEN.fullmatch(name) or not _PARAM_VALUE.fullmatch(val):
            return DEFAULT_TYPE
        params.append(f"{name.lower()}={val}")
    return "; ".join([f"{kind.lower()}/{sub.lower()}", *params])


def essence(content_type: str) -> str:
    return content_type.partition(";")[0].strip().lower()


def is_inline(content_type: str) -> bool:
    return essence(content_type) in INLINE_TYPES


def clean_filename(name: str | None) -> str | None:
    """A file name fit for a header: no path separators or control characters."""
    if name is None:
        return None
    name = "".join(c for c in name if c >= " " and c not in "\x7f/\\")
    name = name.strip()[:255]
    return name or None


def content_disposition(content_type: str, filename: str | None) -> str:
    """``inline`` only for safe types; the name as RFC 6266 ``filename*``."""
    kind = "inline" if is_inline(content_type) else "attachment"
    name = clean_filename(filename)
    if name is None:
        return kind
    if name.isascii() and _TOKEN.fullmatch(name):
        return f"{kind}; filename={name}"
    return f"{kind}; filename*=utf-8''{quote(name, safe='')}"


def serving_headers(content_type: str, filename: str | None) -> dict[str, str]:
    """Every header a media answer carries, on every download endpoint."""
    return {
        "Content-Type": content_type,
        "Content-Disposition": content_disposition(content_type, filename),
        "Content-Security-Policy": CSP,
        "X-Content-Type-Options": "nosniff",
        "Cross-Origin-Resource-Policy": "cross-origin",
        "Cache-Control": "private, max-age=86400",
    }


def filename_from_disposition(value: str | None) -> str | None:
    """The file name in a remote server's ``Content-Disposition`` (for the cache)."""
    if not value:
        return None
    from email.message import Message

    msg = Message()
    msg["Content-Disposition"] = value
    name = msg.get_filename()
    return clean_filename(name) if isinstance(name, str) else None
