"""X-Matrix authentication and the outbound client between two real servers."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from federation.auth import sign_request
from federation.client import FederationClient
from federation.errors import DestinationRefused, FederationError
from homeserver.app import RunningServer
from homeserver.clock import Clock
from homeserver.events.keys import SigningKey, generate_signing_key
from tests.conftest import ServerFactory
from tests.helpers import Api

PROFILE = "/_matrix/federation/v1/query/profile"


def fed(server: RunningServer) -> Any:
    assert server.hs.federation is not None
    return server.hs.federation


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await make_server(federated=True), await make_server(federated=True)


async def make_user(server: RunningServer, name: str, displayname: str) -> str:
    async with Api(server.client_url) as api:
        user = await api.register(name)
        reply = await api.put(
            f"/profile/{user.user_id}/displayname",
            {"displayname": displayname},
            token=user.access_token,
        )
        assert reply.status == 200
        return user.user_id


async def raw_get(server: RunningServer, uri: str, authorization: str | None) -> tuple[int, Any]:
    headers = {} if authorization is None else {"Authorization": authorization}
    url = URL(f"https://127.0.0.1:{server.federation_port}{uri}", encoded=True)
    async with aiohttp.ClientSession() as s, s.get(url, headers=headers, ssl=False) as resp:
        return resp.status, await resp.json()


def profile_uri(user_id: str) -> str:
    return f"{PROFILE}?user_id={quote(user_id, safe='')}"


async def test_signed_request_is_accepted(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    b_name = b.hs.config.server_name
    alice = await make_user(b, "alice", "Alice Liddell")
    client = fed(a).client
    assert await client.get_json(b_name, PROFILE, {"user_id": alice}) == {
        "displayname": "Alice Liddell"
    }
    assert await client.get_json(b_name, PROFILE, {"user_id": alice, "field": "avatar_url"}) == {}
    # The same, hand-signed, through a plain HTTPS request.
    uri = profile_uri(alice)
    auth = sign_request(a.hs.config.server_name, a.hs.signing_key, b_name, "GET", uri)
    assert await raw_get(b, uri, auth) == (200, {"displayname": "Alice Liddell"})


async def test_remote_errors_are_typed(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    b_name = b.hs.config.server_name
    client = fed(a).client
    with pytest.raises(FederationError) as e:
        await client.get_json(b_name, PROFILE, {"user_id": f"@nobody:{b_name}"})
    assert (e.value.status, e.value.errcode) == (404, "M_NOT_FOUND")
    with pytest.raises(FederationError) as e:
        await client.get_json(b_name, "/_matrix/federation/v1/nonexistent")
    assert (e.value.status, e.value.errcode) == (404, "M_UNRECOGNIZED")
    with pytest.raises(FederationError) as e:
        await client.get_json(b_name, "/_matrix/key/v2/server", max_response_bytes=100)
    assert "too large" in e.value.error
    with pytest.raises(FederationError) as e:
        await client.get_json("127.0.0.1:1", "/_matrix/federation/v1/version", timeout_s=5)
    assert e.value.status is None


def _forged(origin: str, key_id: str, destination: str, uri: str) -> str:
    impostor = SigningKey(key_id.split(":", 1)[1], bytes(generate_signing_key("x").seed))
    return sign_request(origin, impostor, destination, "GET", uri)


async def test_bad_authentication_is_401(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    alice = await make_user(b, "alice", "Alice")
    uri = profile_uri(alice)
    key = a.hs.signing_key
    cases = {
        "missing": None,
        "forged": _forged(a_name, key.key_id, b_name, uri),
        "wrong destination": sign_request(a_name, key, "elsewhere.example", "GET", uri),
        "other uri": sign_request(a_name, key, b_name, "GET", profile_uri("@bob:x")),
        "other method": sign_request(a_name, key, b_name, "POST", uri),
        "unknown key": sign_request(a_name, generate_signing_key("zz"), b_name, "GET", uri),
        "unreachable origin": sign_request("127.0.0.1:1", key, b_name, "GET", uri),
        "not x-matrix": "Bearer abc",
        "garbled": 'X-Matrix origin="unterminated',
        "no sig": f'X-Matrix origin="{a_name}",destination="{b_name}",key="{key.key_id}"',
    }
    for label, header in cases.items():
        status, body = await raw_get(b, uri, header)
        assert (status, body.get("errcode")) == (401, "M_UNAUTHORIZED"), label
    # An origin that is no server name at all (a non-numeric port) is a bad request.
    bad_origin = sign_request("localhost:http", key, b_name, "GET", uri)
    status, body = await raw_get(b, uri, bad_origin)
    assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM")


async def test_unquoted_header_and_no_destination_accepted(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    alice = await make_user(b, "alice", "Alice")
    uri = profile_uri(alice)
    signed = sign_request(a_name, a.hs.signing_key, b_name, "GET", uri)
    sig = signed.rsplit('sig="', 1)[1].rstrip('"')
    # Bare values (colons allowed), other order, upper-case names, spaces around commas;
    # a missing destination parameter is accepted for older senders.
    header = f"X-Matrix  SIG={sig} , key={a.hs.signing_key.key_id},\torigin={a_name}"
    assert await raw_get(b, uri, header) == (200, {"displayname": "Alice"})


async def test_version_endpoint(pair: tuple[RunningServer, RunningServer]) -> None:
    a, b = pair
    body = await fed(a).client.get_json(b.hs.config.server_name, "/_matrix/federation/v1/version")
    assert body["server"]["name"] == "Myelin"
    assert isinstance(body["server"]["version"], str) and body["server"]["version"]


async def test_loopback_refused_without_insecure_local(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    port = b.federation_port
    strict = FederationClient(a.hs.config.server_name, a.hs.signing_key, Clock())
    try:
        for destination in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            with pytest.raises(DestinationRefused):
                await strict.get_json(destination, "/_matrix/federation/v1/version")
    finally:
        await strict.close()
