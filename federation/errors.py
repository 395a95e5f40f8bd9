"""Errors of the federation layer, shared by the client, the keyring and request auth."""

from __future__ import annotations

from typing import Any


class FederationError(Exception):
    """An outbound request failed.

    ``status`` is the remote's HTTP status, or None when no answer came
    (unreachable, timed out, refused by our own policy, bad TLS). ``errcode``
    is the remote's Matrix errcode when it sent one.
    """

    def __init__(
        self,
        destination: str,
        error: str,
        *,
        status: int | None = None,
        errcode: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{destination}: {status or '-'} {errcode or ''} {error}".strip())
        self.destination = destination
        self.error = error
        self.status = status
        self.errcode = errcode
        self.body = body

    @property
    def retry_after_ms(self) -> int | None:
        value = self.body.get("retry_after_ms") if isinstance(self.body, dict) else None
        return value if isinstance(value, int) and not isinstance(value, bool) else None


class DestinationRefused(FederationError):
    """Our policy forbids talking to this address (loopback, private, link-local, ...)."""


class DestinationDenied(DestinationRefused):
    """The operator's federation.allow_list / deny_list forbids this server."""

    def __init__(self, destination: str) -> None:
        super().__init__(
            destination,
            f"Federation with {destination} is not allowed by this server's configuration",
            errcode="M_FORBIDDEN",
        )


class KeyLookupError(Exception):
    """No trusted key could be found for a server's key id."""


class EduRefused(Exception):
    """An inbound EDU (or part of one) is refused; the reason names no content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
