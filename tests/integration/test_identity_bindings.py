"""Binding addresses on an identity server through the homeserver, and removing those
bindings: /account/3pid/bind, /unbind, /delete and deactivation (spec client-server
"Adding Account Administrative Contact Information"), against a real identity
server on 127.0.0.1 (tests/integration/identity_server.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory, free_port
from tests.helpers import Api, Reply, User
from tests.integration.identity_server import ACCESS_TOKEN, IdentityServer, identity_server
from tests.integration.test_account_management import password_auth


@pytest.fixture
async def ids(tmp_path: Path) -> AsyncIterator[IdentityServer]:
    async with identity_server(tmp_path) as server:
        yield server


@pytest.fixture
async def hs(make_server: ServerFactory) -> RunningServer:
    # A resolvable server name: the identity server fetches its key to check unbinds.
    return await make_server(federated=True)


@pytest.fixture
async def client(hs: RunningServer) -> AsyncIterator[tuple[Api, User]]:
    """A client of ``hs`` and the account it registered."""
    async with Api(hs.client_url) as api:
        yield api, await api.register("alice")


async def bind(api: Api, user: User, ids: IdentityServer, address: str) -> None:
    sid = ids.validate("email", address, "secret")
    body = {
        "id_server": ids.name,
        "id_access_token": ACCESS_TOKEN,
        "sid": sid,
        "client_secret": "secret",
    }
    r = await api.post("/account/3pid/bind", body, token=user.access_token)
    assert r.status == 200 and r.body == {}, r.body
    assert ids.bindings[("email", address)] == user.user_id


async def remove(api: Api, user: User, path: str, address: str, **extra: str) -> Reply:
    """POST ``path`` (/account/3pid/unbind or /delete) for the email ``address``."""
    body = {"medium": "email", "address": address, **extra}
    return await api.post(path, body, token=user.access_token)


def assert_unbound(r: Reply, ids: IdentityServer, address: str) -> None:
    """The homeserver reports success and the identity server no longer holds it."""
    assert r.status == 200 and r.body == {"id_server_unbind_result": "success"}, r.body
    assert ("email", address) not in ids.bindings


async def test_bind_then_unbind_without_naming_the_server(
    client: tuple[Api, User], ids: IdentityServer
) -> None:
    api, alice = client
    await bind(api, alice, ids, "a@example.test")
    r = await remove(api, alice, "/account/3pid/unbind", "a@example.test")
    assert_unbound(r, ids, "a@example.test")
    # The identity server checked the request's X-Matrix signature (else 403 -> 502).
    assert ids.unbind_requests[-1]["mxid"] == alice.user_id
    # Nothing left to unbind, and no server named: no-support.
    again = await remove(api, alice, "/account/3pid/unbind", "a@example.test")
    assert again.body == {"id_server_unbind_result": "no-support"}


async def test_delete_unbinds_and_out_of_band_bindings(
    client: tuple[Api, User], ids: IdentityServer
) -> None:
    api, alice = client
    await bind(api, alice, ids, "b@example.test")
    # Only bound (not on the account): delete still removes the binding.
    r = await remove(api, alice, "/account/3pid/delete", "b@example.test")
    assert_unbound(r, ids, "b@example.test")
    # Bound without the homeserver: it is removed from the server the client names.
    ids.bindings[("email", "c@example.test")] = alice.user_id
    r = await remove(api, alice, "/account/3pid/delete", "c@example.test", id_server=ids.name)
    assert_unbound(r, ids, "c@example.test")
    # Neither on the account nor bound anywhere we know: the address is not found.
    r = await remove(api, alice, "/account/3pid/delete", "d@example.test")
    assert (r.status, r.errcode) == (400, "M_THREEPID_NOT_FOUND")


async def test_deactivation_unbinds(client: tuple[Api, User], ids: IdentityServer) -> None:
    api, alice = client
    await bind(api, alice, ids, "e@example.test")
    r = await api.post("/account/deactivate", {}, token=alice.access_token)
    auth = password_auth(alice, r.body["session"])
    r = await api.post("/account/deactivate", {"auth": auth}, token=alice.access_token)
    assert_unbound(r, ids, "e@example.test")


async def test_bind_refusals(client: tuple[Api, User], ids: IdentityServer) -> None:
    api, alice = client
    token = alice.access_token
    body = {"id_server": ids.name, "id_access_token": ACCESS_TOKEN, "client_secret": "s"}
    # The identity server does not know the session: its refusal is passed on.
    r = await api.post("/account/3pid/bind", {**body, "sid": "nope"}, token=token)
    assert (r.status, r.errcode) == (400, "M_NO_VALID_SESSION"), r.body
    missing = {k: v for k, v in body.items() if k != "id_access_token"}
    r = await api.post("/account/3pid/bind", {**missing, "sid": "x"}, token=token)
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
    bad = {**body, "sid": "x", "id_server": "no server/at all"}
    r = await api.post("/account/3pid/bind", bad, token=token)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    # Nobody listens there: 502, not a 500.
    gone = {**body, "sid": "x", "id_server": f"127.0.0.1:{free_port()}"}
    r = await api.post("/account/3pid/bind", gone, token=token)
    assert (r.status, r.errcode) == (502, "M_UNKNOWN")
