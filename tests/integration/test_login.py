"""GET/POST /login, /refresh, /logout, /logout/all, /account/whoami."""

from __future__ import annotations

import asyncio

from tests.conftest import ServerFactory
from tests.helpers import Api


async def test_login_flows(api: Api) -> None:
    r = await api.get("/login")
    assert r.status == 200
    assert {"type": "m.login.password"} in r.body["flows"]


async def test_login_identifier_forms(api: Api) -> None:
    alice = await api.register("alice")
    forms = [
        {"identifier": {"type": "m.id.user", "user": "alice"}},
        {"identifier": {"type": "m.id.user", "user": "@alice:localhost"}},
        {"identifier": {"type": "m.id.user", "user": "ALICE"}},
        {"user": "alice"},  # the deprecated top-level field
        {"user": "@alice:localhost"},
    ]
    for form in forms:
        r = await api.post(
            "/login", {"type": "m.login.password", "password": alice.password, **form}
        )
        assert r.status == 200, (form, r.body)
        assert r.body["user_id"] == "@alice:localhost"
        assert r.body["home_server"] == "localhost"
        assert "refresh_token" not in r.body and "expires_in_ms" not in r.body
        me = await api.get("/account/whoami", token=r.body["access_token"])
        assert me.body["device_id"] == r.body["device_id"]


async def test_login_failures(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.login("alice", "wrong password")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.login("nobody", "whatever")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.login("@alice:other.server", alice.password)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.post("/login", {"type": "m.login.fancy", "user": "alice", "password": "x"})
    assert (r.status, r.errcode) == (400, "M_UNKNOWN")
    r = await api.post(
        "/login",
        {"type": "m.login.password", "identifier": {"type": "m.id.phone"}, "password": "x"},
    )
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    r = await api.post("/login", {"type": "m.login.password", "password": "x"})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    r = await api.post("/login", {"type": "m.login.password", "user": "alice", "password": 12})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    # Only the registration device exists: failed logins created nothing.
    devices = await api.get("/devices", token=alice.access_token)
    assert [d["device_id"] for d in devices.body["devices"]] == [alice.device_id]


async def test_login_device_id_reuse_and_display_name(api: Api) -> None:
    alice = await api.register("alice")
    r1 = await api.login(
        "alice", alice.password, device_id="LAPTOP", initial_device_display_name="Work laptop"
    )
    assert r1.status == 200 and r1.body["device_id"] == "LAPTOP"
    r = await api.get("/devices/LAPTOP", token=alice.access_token)
    assert r.status == 200
    assert r.body["device_id"] == "LAPTOP" and r.body["display_name"] == "Work laptop"
    # Logging in again with the same device id reuses the device; the name given
    # at first login is kept, and the device's earlier token is invalidated.
    r2 = await api.login(
        "alice", alice.password, device_id="LAPTOP", initial_device_display_name="Ignored"
    )
    assert r2.status == 200 and r2.body["device_id"] == "LAPTOP"
    assert r2.body["access_token"] != r1.body["access_token"]
    devices = await api.get("/devices", token=r2.body["access_token"])
    assert sorted((d["device_id"], d["display_name"]) for d in devices.body["devices"]) == sorted(
        [(alice.device_id, None), ("LAPTOP", "Work laptop")]
    )
    old = await api.get("/account/whoami", token=r1.body["access_token"])
    assert (old.status, old.errcode) == (401, "M_UNKNOWN_TOKEN")
    me = await api.get("/account/whoami", token=r2.body["access_token"])
    assert me.body["device_id"] == "LAPTOP"


async def test_refresh_tokens_and_soft_logout(make_server: ServerFactory) -> None:
    server = await make_server(refreshable_access_token_lifetime_ms=600)
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        r = await api.login("alice", alice.password, refresh_token=True)
        assert r.status == 200
        assert r.body["expires_in_ms"] == 600
        access, refresh = r.body["access_token"], r.body["refresh_token"]
        assert (await api.get("/account/whoami", token=access)).status == 200

        r = await api.post("/refresh", {"refresh_token": refresh})
        assert r.status == 200, r.body
        assert r.body["expires_in_ms"] == 600
        access2, refresh2 = r.body["access_token"], r.body["refresh_token"]
        assert access2 != access and refresh2 != refresh
        assert (await api.get("/account/whoami", token=access2)).body["user_id"] == alice.user_id
        # A refresh token is single use.
        r = await api.post("/refresh", {"refresh_token": refresh})
        assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")

        await asyncio.sleep(0.8)
        r = await api.get("/account/whoami", token=access2)
        assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
        assert r.body["soft_logout"] is True
        # Tokens issued without refresh do not expire.
        assert (await api.get("/account/whoami", token=alice.access_token)).status == 200
        # The refresh token still works after the access token expired.
        r = await api.post("/refresh", {"refresh_token": refresh2})
        assert r.status == 200
        assert (await api.get("/account/whoami", token=r.body["access_token"])).status == 200
        r = await api.post("/refresh", {"refresh_token": "mylr_garbage"})
        assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
        r = await api.post("/refresh", {})
        assert (r.status, r.errcode) == (400, "M_BAD_JSON")


async def test_logout_deletes_device(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.login("alice", alice.password)
    token2, device2 = r.body["access_token"], r.body["device_id"]
    r = await api.post("/logout", token=token2)
    assert r.status == 200 and r.body == {}
    r = await api.get("/account/whoami", token=token2)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    assert "soft_logout" not in r.body
    devices = await api.get("/devices", token=alice.access_token)
    assert device2 not in [d["device_id"] for d in devices.body["devices"]]
    r = await api.post("/logout", token=token2)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")


async def test_logout_all(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    tokens = [alice.access_token]
    for _ in range(2):
        tokens.append((await api.login("alice", alice.password)).body["access_token"])
    r = await api.post("/logout/all", token=tokens[1])
    assert r.status == 200 and r.body == {}
    for t in tokens:
        r = await api.get("/account/whoami", token=t)
        assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    # Other users are untouched; alice can log in again.
    assert (await api.get("/account/whoami", token=bob.access_token)).status == 200
    r = await api.login("alice", alice.password)
    assert r.status == 200
    devices = await api.get("/devices", token=r.body["access_token"])
    assert [d["device_id"] for d in devices.body["devices"]] == [r.body["device_id"]]


async def test_whoami_and_token_errors(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.get("/account/whoami", token=alice.access_token)
    assert r.body == {"user_id": alice.user_id, "device_id": alice.device_id, "is_guest": False}
    # Deprecated query-parameter form.
    r = await api.get("/account/whoami", params={"access_token": alice.access_token})
    assert r.status == 200 and r.body["user_id"] == alice.user_id
    r = await api.get("/account/whoami")
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    assert isinstance(r.body["error"], str)
    r = await api.get("/account/whoami", token="myl_not_a_real_token")
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    r = await api.get("/account/whoami", headers={"Authorization": "Basic abc"})
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
