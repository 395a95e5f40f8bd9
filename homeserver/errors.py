"""Matrix-shaped errors.

Every failure a client or a peer can see is a ``MatrixError``: an HTTP status,
an ``errcode`` from the spec and a human-readable ``error``. Services raise
them; the HTTP shell turns them into JSON. Messages never carry secrets,
message bodies or key material.
"""

from __future__ import annotations

from typing import Any


class MatrixError(Exception):
    """An error with a Matrix ``errcode``, answered as JSON with ``status``."""

    def __init__(self, status: int, errcode: str, error: str, **extra: Any) -> None:
        super().__init__(f"{errcode}: {error}")
        self.status = status
        self.errcode = errcode
        self.error = error
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        return {"errcode": self.errcode, "error": self.error, **self.extra}


def forbidden(error: str = "You are not allowed to do that") -> MatrixError:
    return MatrixError(403, "M_FORBIDDEN", error)


def not_found(error: str = "Not found") -> MatrixError:
    return MatrixError(404, "M_NOT_FOUND", error)


def bad_json(error: str) -> MatrixError:
    return MatrixError(400, "M_BAD_JSON", error)


def not_json(error: str = "Content is not valid JSON") -> MatrixError:
    return MatrixError(400, "M_NOT_JSON", error)


def invalid_param(error: str) -> MatrixError:
    return MatrixError(400, "M_INVALID_PARAM", error)


def missing_param(error: str) -> MatrixError:
    return MatrixError(400, "M_MISSING_PARAM", error)


def unrecognized(status: int = 404, error: str = "Unrecognized request") -> MatrixError:
    return MatrixError(status, "M_UNRECOGNIZED", error)


def limit_exceeded(retry_after_ms: int) -> MatrixError:
    return MatrixError(429, "M_LIMIT_EXCEEDED", "Too many requests", retry_after_ms=retry_after_ms)


def too_large(error: str = "Request body is too large") -> MatrixError:
    return MatrixError(413, "M_TOO_LARGE", error)


def unknown(error: str = "Internal server error") -> MatrixError:
    return MatrixError(500, "M_UNKNOWN", error)
