"""Helpers for the admin API tests: an admin account and Synapse's path prefixes."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api, User

V1 = "/_synapse/admin/v1"
V2 = "/_synapse/admin/v2"


async def make_admin(server: RunningServer, api: Api, username: str = "root") -> User:
    """A registered user made server admin the way register-user --admin does (store flag)."""
    user = await api.register(username)
    record = await server.hs.accounts.store.get_user(user.user_id)
    assert record is not None
    await server.hs.accounts.store.set_admin(record.user_nid, True)
    server.hs.auth.forget_user(user.user_id)
    return user
