"""matrix-nio (the real library) registers, logs in, asks whoami and logs out."""

from __future__ import annotations

from pathlib import Path

import nio
import pytest

from tests.conftest import ServerFactory

pytestmark = pytest.mark.interop


async def test_nio_register_login_whoami_logout(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await make_server()
    client = nio.AsyncClient(server.client_url, store_path=str(tmp_path))
    try:
        resp = await client.register("niouser", "nio password 1", device_name="nio device")
        assert isinstance(resp, nio.RegisterResponse), resp
        assert resp.user_id == "@niouser:localhost"
        assert resp.access_token and resp.device_id

        client2 = nio.AsyncClient(server.client_url, "@niouser:localhost", store_path=str(tmp_path))
        try:
            login = await client2.login("nio password 1", device_name="second device")
            assert isinstance(login, nio.LoginResponse), login
            assert login.user_id == "@niouser:localhost"
            assert login.device_id != resp.device_id

            who = await client2.whoami()
            assert isinstance(who, nio.WhoamiResponse), who
            assert who.user_id == "@niouser:localhost"
            assert who.device_id == login.device_id
            assert who.is_guest is False

            devices = await client2.devices()
            assert isinstance(devices, nio.DevicesResponse), devices
            names = {d.id: d.display_name for d in devices.devices}
            assert names == {resp.device_id: "nio device", login.device_id: "second device"}

            out = await client2.logout()
            assert isinstance(out, nio.LogoutResponse), out
            # The token is dead now.
            who = await client2.whoami()
            assert isinstance(who, nio.WhoamiError)
            assert who.status_code == "M_UNKNOWN_TOKEN"

            bad = await client2.login("wrong password")
            assert isinstance(bad, nio.LoginError)
            assert bad.status_code == "M_FORBIDDEN"
        finally:
            await client2.close()
        # The first device is still logged in.
        who = await client.whoami()
        assert isinstance(who, nio.WhoamiResponse) and who.device_id == resp.device_id
    finally:
        await client.close()


async def test_nio_register_with_token(make_server: ServerFactory, tmp_path: Path) -> None:
    server = await make_server(registration={"enabled": False, "tokens": ["nio-token"]})
    client = nio.AsyncClient(server.client_url, store_path=str(tmp_path))
    try:
        resp = await client.register_with_token("tokenuser", "pw token", "nio-token")
        assert isinstance(resp, nio.RegisterResponse), resp
        assert resp.user_id == "@tokenuser:localhost"
        # Without a token, registration does not complete.
        plain = await client.register("other", "pw")
        assert not isinstance(plain, nio.RegisterResponse)
        assert plain.transport_response is not None
        assert plain.transport_response.status == 401
    finally:
        await client.close()
