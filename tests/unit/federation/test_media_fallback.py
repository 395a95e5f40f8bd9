"""When fetching remote media falls back to the deprecated endpoint (server-server
"Content Repository": only on 404 M_UNRECOGNIZED, i.e. an older server), and what a
client is told when the origin fails."""

from __future__ import annotations

from federation.errors import FederationError
from federation.media import _client_error, falls_back


def err(status: int | None, errcode: str | None = None) -> FederationError:
    return FederationError("origin.test", "x", status=status, errcode=errcode)


def test_falls_back_only_for_an_unknown_endpoint() -> None:
    assert falls_back(err(404, "M_UNRECOGNIZED"))
    assert falls_back(err(404))
    assert falls_back(err(405, "M_UNRECOGNIZED"))
    assert not falls_back(err(404, "M_NOT_FOUND"))  # the media does not exist
    assert not falls_back(err(401, "M_UNAUTHORIZED"))
    assert not falls_back(err(502, "M_TOO_LARGE"))
    assert not falls_back(err(None))  # unreachable


def test_client_errors() -> None:
    assert (_client_error(err(404, "M_NOT_FOUND")).status, _client_error(err(404)).errcode) == (
        404,
        "M_NOT_FOUND",
    )
    too_large = _client_error(err(502, "M_TOO_LARGE"))
    assert (too_large.status, too_large.errcode) == (502, "M_TOO_LARGE")
    pending = _client_error(err(504, "M_NOT_YET_UPLOADED"))
    assert (pending.status, pending.errcode) == (504, "M_NOT_YET_UPLOADED")
    down = _client_error(err(None))
    assert (down.status, down.errcode) == (502, "M_UNKNOWN")
