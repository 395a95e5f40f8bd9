"""POST /register (user-interactive auth), /register/available, guests, username rules."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """Guest accounts are off by default; this module's tests use them."""
    return await make_server(registration={"allow_guests": True})


PW = "correct horse battery"


async def test_register_without_auth_answers_uia_then_dummy_completes(api: Api) -> None:
    r = await api.post("/register", {"username": "bob", "password": PW})
    assert r.status == 401
    assert r.body["flows"] == [{"stages": ["m.login.dummy"]}]
    assert isinstance(r.body["session"], str) and r.body["session"]
    assert r.body["params"] == {}
    assert "errcode" not in r.body
    # Nothing was created by the first call.
    r2 = await api.get("/register/available", params={"username": "bob"})
    assert r2.status == 200 and r2.body == {"available": True}

    r = await api.post(
        "/register",
        {
            "username": "bob",
            "password": PW,
            "initial_device_display_name": "Bob's phone",
            "auth": {"type": "m.login.dummy", "session": r.body["session"]},
        },
    )
    assert r.status == 200, r.body
    assert r.body["user_id"] == "@bob:localhost"
    assert r.body["home_server"] == "localhost"
    token, device_id = r.body["access_token"], r.body["device_id"]
    assert len(token) >= 22 and device_id
    me = await api.get("/account/whoami", token=token)
    assert me.body == {"user_id": "@bob:localhost", "device_id": device_id, "is_guest": False}
    devices = await api.get("/devices", token=token)
    assert [(d["device_id"], d["display_name"]) for d in devices.body["devices"]] == [
        (device_id, "Bob's phone")
    ]


async def test_register_with_dummy_on_first_call_succeeds(api: Api) -> None:
    # What matrix-nio does: auth on the first request, no session.
    r = await api.post(
        "/register",
        {
            "username": "Carol",
            "password": PW,
            "device_id": "MYDEVICE",
            "auth": {"type": "m.login.dummy"},
        },
    )
    assert r.status == 200, r.body
    assert r.body["user_id"] == "@carol:localhost"
    assert r.body["device_id"] == "MYDEVICE"
    login = await api.login("carol", PW)
    assert login.status == 200


async def test_register_username_rules(api: Api) -> None:
    await api.register("dave")
    cases: list[tuple[str, str]] = [
        ("dave", "M_USER_IN_USE"),
        ("DAVE", "M_USER_IN_USE"),
        ("bad name", "M_INVALID_USERNAME"),
        ("bad:colon", "M_INVALID_USERNAME"),
        ("émile", "M_INVALID_USERNAME"),
        ("", "M_INVALID_USERNAME"),
        ("_underscore", "M_INVALID_USERNAME"),
        ("12345", "M_INVALID_USERNAME"),
        ("x" * 300, "M_INVALID_USERNAME"),
    ]
    for username, errcode in cases:
        r = await api.post(
            "/register",
            {"username": username, "password": PW, "auth": {"type": "m.login.dummy"}},
        )
        assert (r.status, r.errcode) == (400, errcode), username
        a = await api.get("/register/available", params={"username": username})
        assert (a.status, a.errcode) == (400, errcode), username
    r = await api.post("/register", {"username": 5, "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    r = await api.get("/register/available")
    assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")


async def test_reserved_localparts_are_exclusive(make_server: ServerFactory) -> None:
    server = await make_server(registration={"reserved_localparts": ["_bridge", "irc_"]})
    async with Api(server.client_url) as api:
        for name in ("irc_alice", "irc_"):
            r = await api.post(
                "/register", {"username": name, "password": PW, "auth": {"type": "m.login.dummy"}}
            )
            assert (r.status, r.errcode) == (400, "M_EXCLUSIVE"), name
            a = await api.get("/register/available", params={"username": name})
            assert (a.status, a.errcode) == (400, "M_EXCLUSIVE")
        # Only the prefix is reserved.
        r = await api.get("/register/available", params={"username": "ircfan"})
        assert r.status == 200 and r.body == {"available": True}


async def test_inhibit_login(api: Api) -> None:
    r = await api.post(
        "/register",
        {
            "username": "erin",
            "password": PW,
            "inhibit_login": True,
            "auth": {"type": "m.login.dummy"},
        },
    )
    assert r.status == 200
    assert r.body["user_id"] == "@erin:localhost"
    assert "access_token" not in r.body and "device_id" not in r.body
    login = await api.login("erin", PW)
    assert login.status == 200
    devices = await api.get("/devices", token=login.body["access_token"])
    assert [d["device_id"] for d in devices.body["devices"]] == [login.body["device_id"]]


async def test_register_guest(api: Api) -> None:
    r = await api.post("/register", {}, params={"kind": "guest"})
    assert r.status == 200, r.body
    user_id, token = r.body["user_id"], r.body["access_token"]
    assert user_id.startswith("@") and user_id.endswith(":localhost")
    me = await api.get("/account/whoami", token=token)
    assert me.status == 200 and me.body["is_guest"] is True and me.body["user_id"] == user_id
    # Guests may not use endpoints that are not open to guests.
    r = await api.post("/account/password", {"new_password": "x"}, token=token)
    assert (r.status, r.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    r = await api.post("/register", {}, params={"kind": "robot"})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")


async def test_guests_are_off_by_default(make_server: ServerFactory) -> None:
    server = await make_server()
    assert server.hs.config.registration.allow_guests is False
    async with Api(server.client_url) as api:
        r = await api.post("/register", {}, params={"kind": "guest"})
        assert (r.status, r.errcode) == (403, "M_GUEST_ACCESS_FORBIDDEN")
        # Ordinary registration is not affected.
        assert (await api.register("frank")).user_id == "@frank:localhost"


async def test_registration_disabled(make_server: ServerFactory) -> None:
    server = await make_server(registration={"enabled": False})
    async with Api(server.client_url) as api:
        for body in (
            {"username": "frank", "password": PW},
            {"username": "frank", "password": PW, "auth": {"type": "m.login.dummy"}},
        ):
            r = await api.post("/register", body)
            assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        assert (await api.login("frank", PW)).status == 403


async def test_registration_tokens(make_server: ServerFactory) -> None:
    server = await make_server(registration={"enabled": False, "tokens": ["s3cret-token"]})
    async with Api(server.client_url) as api:
        r = await api.post("/register", {"username": "gina", "password": PW})
        assert r.status == 401
        assert r.body["flows"] == [{"stages": ["m.login.registration_token", "m.login.dummy"]}]
        session = r.body["session"]
        # Dummy alone does not complete the token flow.
        r = await api.post(
            "/register",
            {"username": "gina", "password": PW, "auth": {"type": "m.login.dummy"}},
        )
        assert r.status == 401 and "access_token" not in r.body
        # A wrong token fails the stage.
        r = await api.post(
            "/register",
            {
                "username": "gina",
                "password": PW,
                "auth": {"type": "m.login.registration_token", "token": "nope", "session": session},
            },
        )
        assert (r.status, r.errcode) == (401, "M_FORBIDDEN")
        assert r.body["session"] == session and r.body["completed"] == []
        r = await api.post(
            "/register",
            {
                "username": "gina",
                "password": PW,
                "auth": {
                    "type": "m.login.registration_token",
                    "token": "s3cret-token",
                    "session": session,
                },
            },
        )
        assert r.status == 401
        assert r.body["completed"] == ["m.login.registration_token"]
        r = await api.post(
            "/register",
            {
                "username": "gina",
                "password": PW,
                "auth": {"type": "m.login.dummy", "session": session},
            },
        )
        assert r.status == 200, r.body
        assert r.body["user_id"] == "@gina:localhost"
        # A retry with the completed session is idempotent: the same user (with a new
        # login), whatever the retry names; nothing else is registered.
        r = await api.post(
            "/register",
            {
                "username": "gina2",
                "password": PW,
                "auth": {"type": "m.login.dummy", "session": session},
            },
        )
        assert r.status == 200 and r.body["user_id"] == "@gina:localhost"
        r = await api.get("/register/available", params={"username": "gina2"})
        assert r.status == 200 and r.body == {"available": True}


async def test_unknown_auth_type_and_bad_auth_shape(api: Api) -> None:
    r = await api.post(
        "/register", {"username": "hal", "password": PW, "auth": {"type": "m.login.foo"}}
    )
    assert r.status == 401
    assert r.body["flows"] == [{"stages": ["m.login.dummy"]}]
    bad: Any = "not-an-object"
    r = await api.post("/register", {"username": "hal", "password": PW, "auth": bad})
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    assert (await api.get("/register/available", params={"username": "hal"})).status == 200


async def test_session_remembers_parameters_and_inhibit_login(api: Api) -> None:
    """Later stages may send only `auth`: the first request's parameters count (Sytest
    11register), and a retry of a completed session answers the same user."""
    r = await api.post(
        "/register",
        {
            "username": "ivy",
            "password": PW,
            "device_id": "XYZZY",
            "initial_device_display_name": "display_name",
        },
    )
    assert r.status == 401
    session = r.body["session"]
    r = await api.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert r.status == 200, r.body
    assert r.body["user_id"] == "@ivy:localhost" and r.body["device_id"] == "XYZZY"
    token = r.body["access_token"]
    r = await api.get("/devices/XYZZY", token=token)
    assert r.body["display_name"] == "display_name"
    assert (await api.login("ivy", PW)).status == 200
    again = await api.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert again.status == 200 and again.body["user_id"] == "@ivy:localhost"

    r = await api.post("/register", {"username": "jay", "password": PW, "inhibit_login": True})
    session = r.body["session"]
    r = await api.post("/register", {"auth": {"type": "m.login.dummy", "session": session}})
    assert r.status == 200 and r.body["user_id"] == "@jay:localhost"
    assert "access_token" not in r.body and "device_id" not in r.body
    assert (await api.login("jay", PW)).status == 200


async def test_guest_upgrades_to_a_full_account(api: Api) -> None:
    """Registration with guest_access_token keeps the guest's user id (Sytest
    30rooms/13guestaccess); another guest's token cannot take it."""
    r = await api.post("/register", {}, params={"kind": "guest"})
    guest_id, guest_token = r.body["user_id"], r.body["access_token"]
    local = guest_id[1:].split(":", 1)[0]
    r = await api.post("/register", {}, params={"kind": "guest"})
    other_token = r.body["access_token"]
    body = {"username": local, "password": PW, "guest_access_token": other_token}
    r = await api.post("/register", {**body, "auth": {"type": "m.login.dummy"}})
    assert r.status == 403
    body["guest_access_token"] = guest_token
    r = await api.post("/register", {**body, "auth": {"type": "m.login.dummy"}})
    assert r.status == 200, r.body
    assert r.body["user_id"] == guest_id
    # Now a full user: may do what guests may not, and log in with the password.
    r = await api.post("/createRoom", {}, token=r.body["access_token"])
    assert r.status == 200, r.body
    assert (await api.login(local, PW)).status == 200
