"""OpenID tokens over real HTTP: issued to the user, exchanged at userinfo on both
listeners (Sytest 45openid), refused when unknown, missing or for another user."""

from __future__ import annotations

import aiohttp

from tests.conftest import ServerFactory
from tests.helpers import Api


async def test_openid_token_round_trip(make_server: ServerFactory) -> None:
    server = await make_server(federated=True)
    name = server.hs.config.server_name
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        r = await api.post(
            f"/user/{alice.user_id}/openid/request_token", {}, token=alice.access_token
        )
        assert r.status == 200, r.body
        assert r.body["token_type"] == "Bearer" and r.body["matrix_server_name"] == name
        assert r.body["expires_in"] > 0
        token = r.body["access_token"]
        r = await api.post(
            f"/user/{alice.user_id}/openid/request_token", {}, token=bob.access_token
        )
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")

    userinfo = "/_matrix/federation/v1/openid/userinfo"
    fed = f"https://127.0.0.1:{server.federation_port}"
    async with aiohttp.ClientSession() as s:
        for base in (server.client_url, fed):
            async with s.get(base + userinfo, params={"access_token": token}, ssl=False) as resp:
                assert resp.status == 200 and await resp.json() == {"sub": alice.user_id}
            async with s.get(base + userinfo, params={"access_token": "nope"}, ssl=False) as resp:
                assert resp.status == 401
                assert (await resp.json())["errcode"] == "M_UNKNOWN_TOKEN"
            async with s.get(base + userinfo, ssl=False) as resp:
                assert resp.status == 401
    # Only the token's hash is stored.
    rows = await server.hs.db.fetchall("SELECT token_hash FROM openid_tokens")
    assert rows and all(token not in str(row["token_hash"]) for row in rows)
