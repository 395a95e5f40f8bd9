"""POST /_matrix/client/v1/login/get_token (spec v1.7) and the m.login.token login type:
advertised only when enabled, UIA-protected, single use, short-lived."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.helpers import Api, User
from tests.integration.email_support import ShiftedClock

GET_TOKEN = "/_matrix/client/v1/login/get_token"


def password_auth(user: User, session: str) -> dict[str, Any]:
    return {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password,
        "session": session,
    }


async def mint(api: Api, user: User) -> dict[str, Any]:
    first = await api.post(GET_TOKEN, {}, token=user.access_token)
    assert first.status == 401, first.body
    assert first.body["flows"] == [{"stages": ["m.login.password"]}]
    done = await api.post(
        GET_TOKEN, {"auth": password_auth(user, first.body["session"])}, token=user.access_token
    )
    assert done.status == 200, done.body
    body: dict[str, Any] = done.body
    return body


async def test_disabled_by_default(make_server: ServerFactory) -> None:
    server = await make_server()
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        flows = (await api.get("/login")).body["flows"]
        assert flows == [{"type": "m.login.password"}]
        caps = (await api.get("/capabilities", token=alice.access_token)).body["capabilities"]
        assert caps["m.get_login_token"] == {"enabled": False}
        off = await api.post(GET_TOKEN, {}, token=alice.access_token)
        assert off.status == 404 and off.errcode == "M_UNRECOGNIZED"
        login = await api.post("/login", {"type": "m.login.token", "token": "x"})
        assert login.status == 400 and login.errcode == "M_UNKNOWN"


async def test_get_token_then_log_in_once(make_server: ServerFactory) -> None:
    server = await make_server(login_via_existing_session={"enabled": True})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        flows = (await api.get("/login")).body["flows"]
        assert {"type": "m.login.token", "get_login_token": True} in flows
        caps = (await api.get("/capabilities", token=alice.access_token)).body["capabilities"]
        assert caps["m.get_login_token"] == {"enabled": True}
        assert (await api.post(GET_TOKEN, {})).status == 401

        minted = await mint(api, alice)
        assert minted["expires_in_ms"] == 120_000
        login = await api.post(
            "/login",
            {
                "type": "m.login.token",
                "token": minted["login_token"],
                "initial_device_display_name": "new phone",
            },
        )
        assert login.status == 200, login.body
        assert login.body["user_id"] == alice.user_id
        assert login.body["device_id"] != alice.device_id
        who = await api.get("/account/whoami", token=login.body["access_token"])
        assert who.body["user_id"] == alice.user_id
        device = await api.get(f"/devices/{login.body['device_id']}", token=alice.access_token)
        assert device.body["display_name"] == "new phone"

        # Single use.
        reused = await api.post("/login", {"type": "m.login.token", "token": minted["login_token"]})
        assert reused.status == 403 and reused.errcode == "M_FORBIDDEN"
        bogus = await api.post("/login", {"type": "m.login.token", "token": "mylt_nope"})
        assert bogus.status == 403 and bogus.errcode == "M_FORBIDDEN"
        missing = await api.post("/login", {"type": "m.login.token"})
        assert missing.status == 400

        # Each token needs the password again (the spec: always re-prompt).
        wrong = await api.post(GET_TOKEN, {}, token=alice.access_token)
        bad_auth = {**password_auth(alice, wrong.body["session"]), "password": "nope"}
        refused = await api.post(GET_TOKEN, {"auth": bad_auth}, token=alice.access_token)
        assert refused.status == 401 and refused.errcode == "M_FORBIDDEN"

        # Past its lifetime a token is refused.
        late = await mint(api, alice)
        server.hs.login_tokens.clock = ShiftedClock(late["expires_in_ms"] + 1000)
        expired = await api.post("/login", {"type": "m.login.token", "token": late["login_token"]})
        assert expired.status == 403 and expired.errcode == "M_FORBIDDEN"


async def test_without_ui_auth_and_guests(make_server: ServerFactory) -> None:
    server = await make_server(
        login_via_existing_session={
            "enabled": True,
            "require_ui_auth": False,
            "token_timeout_ms": 5000,
        },
        registration={"allow_guests": True},
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        minted = await api.post(GET_TOKEN, {}, token=alice.access_token)
        assert minted.status == 200 and minted.body["expires_in_ms"] == 5000
        login = await api.post(
            "/login", {"type": "m.login.token", "token": minted.body["login_token"]}
        )
        assert login.status == 200 and login.body["user_id"] == alice.user_id
        guest = await api.post("/register?kind=guest", {})
        assert guest.status == 200
        denied = await api.post(GET_TOKEN, {}, token=guest.body["access_token"])
        assert denied.status == 403 and denied.errcode == "M_GUEST_ACCESS_FORBIDDEN"


async def test_get_token_is_rate_limited(make_server: ServerFactory) -> None:
    server = await make_server(
        login_via_existing_session={"enabled": True, "require_ui_auth": False},
        rate_limits={"enabled": True, "registration": {"per_second": 1, "burst_count": 10}},
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        assert (await api.post(GET_TOKEN, {}, token=alice.access_token)).status == 200
        limited = await api.post(GET_TOKEN, {}, token=alice.access_token)
        assert limited.status == 429 and limited.errcode == "M_LIMIT_EXCEEDED"
