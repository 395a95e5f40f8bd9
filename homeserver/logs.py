"""Log lines that can be followed: a request id on every line, text or JSON lines.

The id lives in a ``contextvars`` variable, set by the HTTP shell for each
request (client and federation listeners) and by background jobs for each
run, so every line a request causes carries it without passing it around.
Asyncio tasks copy the context they were created in, so work a request
starts in a task keeps its id.

What never goes into a log line: message content, access tokens, passwords,
key material. Log event ids, room ids, user ids, counts and statuses instead.
"""

from __future__ import annotations

import contextvars
import json
import logging
import secrets
import sys
import time
from typing import IO, Any

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# Libraries whose DEBUG lines would carry query arguments (event JSON, token hashes):
# aiosqlite logs every call with its arguments. They stay at INFO or above.
_QUIET_LIBRARIES = ("aiosqlite", "asyncpg")


def new_request_id(prefix: str = "") -> str:
    """A short random id; ``prefix`` names a background job (``media-upkeep-1a2b...``)."""
    token = secrets.token_hex(6)
    return f"{prefix}-{token}" if prefix else token


class RequestIdFilter(logging.Filter):
    """Stamps ``record.request_id`` from the context (``-`` outside any request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


class JsonLinesFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, request_id, msg (+ exc, extra fields)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", request_id.get()),
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def make_log_handler(stream: IO[str], log_format: str) -> logging.Handler:
    """A stream handler with the request-id filter and the chosen format."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    if log_format == "json":
        handler.setFormatter(JsonLinesFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    return handler


def install_log_handler(
    level: str, log_format: str, stream: IO[str] | None = None
) -> logging.Handler:
    """Route every logger through one handler at ``level``; returns it (tests remove it)."""
    handler = make_log_handler(stream or sys.stderr, log_format)
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(logging.INFO, root.level))
    return handler
