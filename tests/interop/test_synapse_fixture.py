"""The Synapse fixture works: Synapse starts, matrix-nio registers and logs in on both servers,
and Synapse's TLS federation listener serves its signed keys under its IP-literal server name."""

from __future__ import annotations

import secrets
import ssl
import time

import aiohttp
import nio
import pytest

from homeserver.events.keys import read_signing_keys, verify_key_base64
from homeserver.events.signing import verify_json_signature
from tests.interop.conftest import Homeserver, SynapseFactory
from tests.interop.synapse import SynapseServer

pytestmark = pytest.mark.interop


async def test_synapse_answers_versions(synapse_server: SynapseServer) -> None:
    assert synapse_server.server_name == f"127.0.0.1:{synapse_server.federation_port}"
    async with (
        aiohttp.ClientSession() as session,
        session.get(synapse_server.client_url + "/_matrix/client/versions") as reply,
    ):
        assert reply.status == 200
        body = await reply.json()
    assert "v1.11" in body["versions"]


async def test_nio_register_login_whoami_logout(homeserver_url: Homeserver) -> None:
    base_url, server_name, _ = homeserver_url
    username = "nio_" + secrets.token_hex(4)
    password = secrets.token_urlsafe(12)
    user_id = f"@{username}:{server_name}"

    registrar = nio.AsyncClient(base_url, username)
    client = nio.AsyncClient(base_url, user_id)
    try:
        registered = await registrar.register(username, password, device_name="registrar")
        assert isinstance(registered, nio.RegisterResponse), registered
        assert registered.user_id == user_id

        login = await client.login(password, device_name="second device")
        assert isinstance(login, nio.LoginResponse), login
        assert login.user_id == user_id
        assert login.device_id and login.device_id != registered.device_id

        whoami = await client.whoami()
        assert isinstance(whoami, nio.WhoamiResponse), whoami
        assert whoami.user_id == user_id
        assert whoami.device_id == login.device_id

        logout = await client.logout()
        assert isinstance(logout, nio.LogoutResponse), logout
        client.access_token = login.access_token  # nio forgets it on logout; try it again
        after = await client.whoami()
        assert isinstance(after, nio.WhoamiError)
        assert after.status_code == "M_UNKNOWN_TOKEN"

        # The registration device's token is untouched by the other device's logout.
        still = await registrar.whoami()
        assert isinstance(still, nio.WhoamiResponse), still
        assert still.device_id == registered.device_id
    finally:
        await registrar.close()
        await client.close()


async def test_shared_secret_registration(synapse_server: SynapseServer) -> None:
    user = synapse_server.register("fixture_" + secrets.token_hex(4))
    assert user.user_id.endswith(":" + synapse_server.server_name)
    client = nio.AsyncClient(synapse_server.client_url, user.user_id)
    client.access_token = user.access_token
    try:
        whoami = await client.whoami()
        assert isinstance(whoami, nio.WhoamiResponse), whoami
        assert (whoami.user_id, whoami.device_id) == (user.user_id, user.device_id)
        relogin = nio.AsyncClient(synapse_server.client_url, user.user_id)
        login = await relogin.login(user.password)
        await relogin.close()
        assert isinstance(login, nio.LoginResponse), login
    finally:
        await client.close()


async def test_federation_listener_serves_signed_keys_over_tls(
    synapse_server: SynapseServer,
) -> None:
    # Trust exactly the certificate the fixture wrote: this checks that the federation
    # port speaks TLS with it, and that it is valid for the IP literal 127.0.0.1.
    ctx = ssl.create_default_context(cafile=str(synapse_server.base_dir / "tls.crt"))
    url = synapse_server.federation_url + "/_matrix/key/v2/server"
    async with aiohttp.ClientSession() as session, session.get(url, ssl=ctx) as reply:
        assert reply.status == 200
        body = await reply.json()

    assert body["server_name"] == synapse_server.server_name
    assert body["valid_until_ts"] > time.time() * 1000
    (key,) = read_signing_keys((synapse_server.base_dir / "signing.key").read_text())
    assert body["verify_keys"] == {key.key_id: {"key": verify_key_base64(key)}}
    verify_json_signature(body, synapse_server.server_name, key.key_id, key.verify_key)


async def test_synapse_federates_with_a_loopback_peer(
    synapse_server: SynapseServer, make_synapse: SynapseFactory
) -> None:
    # Asking one Synapse's notary endpoint for another's keys makes it fetch them from that
    # server over federation: IP-literal name, self-signed TLS, loopback destination. This
    # fails if loopback were still in its IP blocklist or certificates were verified.
    peer = make_synapse()
    (key,) = read_signing_keys((peer.base_dir / "signing.key").read_text())
    ctx = ssl.create_default_context(cafile=str(synapse_server.base_dir / "tls.crt"))
    url = f"{synapse_server.federation_url}/_matrix/key/v2/query"
    # Synapse 1.163 answers 400 when minimum_valid_until_ts is left out (the spec makes it
    # optional); asking for keys valid from now on also forces the fetch from the peer.
    now_ms = int(time.time() * 1000)
    query = {"server_keys": {peer.server_name: {key.key_id: {"minimum_valid_until_ts": now_ms}}}}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json=query, ssl=ctx) as reply,
    ):
        body = await reply.json()
        assert reply.status == 200, body

    (answer,) = body["server_keys"]
    assert answer["server_name"] == peer.server_name
    assert answer["verify_keys"] == {key.key_id: {"key": verify_key_base64(key)}}
    verify_json_signature(answer, peer.server_name, key.key_id, key.verify_key)
