"""Who is making a client request: the result of checking an access token."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Requester:
    user_id: str
    user_nid: int
    device_id: str
    is_guest: bool
    is_admin: bool
    token_hash: str
    # Set when an application service's as_token made the request (its registration id).
    app_service_id: str | None = None
