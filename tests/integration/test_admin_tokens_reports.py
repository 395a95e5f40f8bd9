"""Registration tokens (admin CRUD, validity, use in /register), reports (client and
admin), and /.well-known/matrix/support, over HTTP."""

from __future__ import annotations

from typing import Any

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.admin_support import V1, make_admin

TOKENS = V1 + "/registration_tokens"
VALIDITY = "/_matrix/client/v1/register/m.login.registration_token/validity"
PW = "a long enough password"


async def register_with_token(api: Api, username: str, token: str) -> Any:
    """The client's dance: ask for a session, pass the token stage, then the dummy stage."""
    r = await api.post("/register", {"username": username, "password": PW})
    assert r.status == 401, r.body
    session = r.body["session"]
    r = await api.post(
        "/register",
        {
            "username": username,
            "password": PW,
            "auth": {"type": "m.login.registration_token", "token": token, "session": session},
        },
    )
    if r.status != 401 or r.errcode is not None:
        return r
    return await api.post(
        "/register",
        {
            "username": username,
            "password": PW,
            "auth": {"type": "m.login.dummy", "session": session},
        },
    )


async def test_token_crud_and_registration(make_server: ServerFactory) -> None:
    server = await make_server(registration={"enabled": False, "tokens": ["from-config"]})
    async with Api(server.client_url) as api:
        # Closed server: the admin is made through the store, as register-user does.
        await server.hs.accounts.create_account("@root:localhost", PW, is_admin=True)
        t = (await api.login("root", PW)).body["access_token"]
        user_token = None
        r = await api.get(TOKENS, token=t)
        assert r.status == 200 and r.body == {"registration_tokens": []}

        r = await api.post(TOKENS + "/new", {"token": "once", "uses_allowed": 1}, token=t)
        assert r.status == 200, r.body
        assert r.body == {
            "token": "once",
            "uses_allowed": 1,
            "pending": 0,
            "completed": 0,
            "expiry_time": None,
        }
        r = await api.post(TOKENS + "/new", {"length": 20}, token=t)
        assert r.status == 200 and len(r.body["token"]) == 20
        generated = r.body["token"]
        r = await api.post(TOKENS + "/new", {}, token=t)
        assert r.status == 200 and len(r.body["token"]) == 16
        for bad in (
            {"token": "once"},
            {"token": "has space"},
            {"token": "x" * 65},
            {"uses_allowed": -1},
            {"uses_allowed": "3"},
            {"expiry_time": 1},
            {"length": 0},
            {"length": 65},
        ):
            r = await api.post(TOKENS + "/new", bad, token=t)
            assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), bad
        r = await api.get(TOKENS, token=t)
        assert len(r.body["registration_tokens"]) == 3

        # Validity, for anyone.
        for token, valid in (("once", True), ("from-config", True), ("nope", False)):
            r = await api.get(VALIDITY, params={"token": token})
            assert r.status == 200 and r.body == {"valid": valid}, token
        r = await api.get(VALIDITY)
        assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")

        # A one-use token registers one account; its use shows as completed.
        r = await register_with_token(api, "first", "once")
        assert r.status == 200, r.body
        user_token = r.body["access_token"]
        r = await api.get(TOKENS + "/once", token=t)
        assert r.body["completed"] == 1 and r.body["pending"] == 0
        assert (await api.get(VALIDITY, params={"token": "once"})).body == {"valid": False}
        r = await register_with_token(api, "second", "once")
        assert (r.status, r.errcode) == (401, "M_FORBIDDEN")
        assert (await api.get("/register/available", params={"username": "second"})).status == 200
        r = await api.get(TOKENS, token=t, params={"valid": "false"})
        assert [x["token"] for x in r.body["registration_tokens"]] == ["once"]

        # A held use counts as pending until the registration finishes.
        r = await api.put(TOKENS + "/once", {"uses_allowed": 3}, token=t)
        assert r.status == 200 and r.body["uses_allowed"] == 3
        r = await api.post("/register", {"username": "third", "password": PW})
        session = r.body["session"]
        r = await api.post(
            "/register",
            {
                "username": "third",
                "password": PW,
                "auth": {"type": "m.login.registration_token", "token": "once", "session": session},
            },
        )
        assert r.status == 401 and r.body["completed"] == ["m.login.registration_token"]
        assert (await api.get(TOKENS + "/once", token=t)).body["pending"] == 1
        # Config tokens keep working, unlimited.
        assert (await register_with_token(api, "fourth", "from-config")).status == 200

        # Update and delete; bad input changes nothing.
        r = await api.put(TOKENS + "/once", {"uses_allowed": "many"}, token=t)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
        r = await api.put(TOKENS + "/missing", {"uses_allowed": 1}, token=t)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        assert (await api.get(TOKENS + "/once", token=t)).body["uses_allowed"] == 3
        r = await api.put(TOKENS + f"/{generated}", {"expiry_time": 1000}, token=t)
        assert r.status == 200 and r.body["expiry_time"] == 1000
        assert (await api.get(VALIDITY, params={"token": generated})).body == {"valid": False}
        assert (await api.delete(TOKENS + f"/{generated}", token=t)).body == {}
        r = await api.get(TOKENS + f"/{generated}", token=t)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        r = await api.delete(TOKENS + f"/{generated}", token=t)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

        # Only admins.
        for method, path in (
            ("GET", TOKENS),
            ("POST", TOKENS + "/new"),
            ("GET", TOKENS + "/once"),
            ("PUT", TOKENS + "/once"),
            ("DELETE", TOKENS + "/once"),
        ):
            r = await api.request(method, path, {}, token=user_token)
            assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), (method, path)
            r = await api.request(method, path, {})
            assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), (method, path)
        assert (await api.get(TOKENS + "/once", token=t)).status == 200


async def test_database_token_opens_a_closed_server(make_server: ServerFactory) -> None:
    server = await make_server(registration={"enabled": False})
    async with Api(server.client_url) as api:
        r = await api.post("/register", {"username": "x", "password": PW})
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        await server.hs.accounts.create_account("@root:localhost", PW, is_admin=True)
        t = (await api.login("root", PW)).body["access_token"]
        assert (await api.post(TOKENS + "/new", {"token": "invite-only"}, token=t)).status == 200
        r = await register_with_token(api, "newcomer", "invite-only")
        assert r.status == 200 and r.body["user_id"] == "@newcomer:localhost"


async def test_support_well_known(make_server: ServerFactory) -> None:
    plain = await make_server()
    async with Api(plain.client_url) as api:
        r = await api.get("/.well-known/matrix/support")
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    server = await make_server(
        support={
            "contacts": [
                {"role": "m.role.admin", "matrix_id": "@admin:localhost"},
                {"role": "m.role.security", "email_address": "security@example.org"},
            ],
            "support_page": "https://example.org/help",
        }
    )
    async with Api(server.client_url) as api:
        r = await api.get("/.well-known/matrix/support")
        assert r.status == 200
        assert r.body == {
            "contacts": [
                {"role": "m.role.admin", "matrix_id": "@admin:localhost"},
                {"role": "m.role.security", "email_address": "security@example.org"},
            ],
            "support_page": "https://example.org/help",
        }


async def test_reports(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post(
        "/createRoom", {"name": "Lobby", "preset": "public_chat"}, token=alice.access_token
    )
    room = r.body["room_id"]
    await api.post(f"/join/{room}", {}, token=bob.access_token)
    r = await api.put(
        f"/rooms/{room}/send/m.room.message/t1",
        {"msgtype": "m.text", "body": "spam"},
        token=alice.access_token,
    )
    event_id = r.body["event_id"]

    r = await api.post(
        f"/rooms/{room}/report/{event_id}",
        {"reason": "spam", "score": -100},
        token=bob.access_token,
    )
    assert r.status == 200, r.body
    r = await api.post(f"/rooms/{room}/report", {"reason": "spam room"}, token=bob.access_token)
    assert r.status == 200, r.body
    r = await api.post(
        f"/users/{alice.user_id}/report", {"reason": "spammer"}, token=bob.access_token
    )
    assert r.status == 200 and r.body == {}
    # Bad user reports store nothing.
    for path, body, want in (
        ("/users/@nobody:localhost/report", {"reason": "x"}, (404, "M_NOT_FOUND")),
        ("/users/@stranger:elsewhere.org/report", {"reason": "x"}, (404, "M_NOT_FOUND")),
        ("/users/not-an-id/report", {"reason": "x"}, (400, "M_INVALID_PARAM")),
        (f"/users/{alice.user_id}/report", {}, (400, "M_BAD_JSON")),
        (f"/users/{alice.user_id}/report", {"reason": 3}, (400, "M_BAD_JSON")),
        (f"/users/{alice.user_id}/report", {"reason": "x" * 1001}, (400, "M_INVALID_PARAM")),
    ):
        r = await api.post(path, body, token=bob.access_token)
        assert (r.status, r.errcode) == want, (path, body, r.body)
    r = await api.post(f"/users/{alice.user_id}/report", {"reason": "x"})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")

    r = await api.get(V1 + "/event_reports", token=t)
    assert r.status == 200 and r.body["total"] == 1 and "next_token" not in r.body
    (report,) = r.body["event_reports"]
    assert report["event_id"] == event_id and report["room_id"] == room
    assert report["user_id"] == bob.user_id and report["sender"] == alice.user_id
    assert report["reason"] == "spam" and report["score"] == -100 and report["name"] == "Lobby"
    assert isinstance(report["received_ts"], int)
    r = await api.get(f"{V1}/event_reports/{report['id']}", token=t)
    assert r.status == 200 and r.body["event_json"]["content"]["body"] == "spam"
    assert r.body["event_json"]["event_id"] == event_id

    r = await api.get(V1 + "/room_reports", token=t)
    (room_report,) = r.body["room_reports"]
    assert room_report["room_id"] == room and room_report["reason"] == "spam room"
    r = await api.get(V1 + "/user_reports", token=t)
    (user_report,) = r.body["user_reports"]
    assert user_report["target_user_id"] == alice.user_id and user_report["user_id"] == bob.user_id

    r = await api.get(V1 + "/event_reports", token=t, params={"user_id": "alice"})
    assert r.body == {"event_reports": [], "total": 0}
    r = await api.get(V1 + "/event_reports", token=t, params={"from": "x"})
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    for path in (f"{V1}/event_reports/{room_report['id']}", f"{V1}/event_reports/abc"):
        r = await api.get(path, token=t)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path
    for path in (V1 + "/event_reports", f"{V1}/user_reports/{user_report['id']}"):
        r = await api.get(path, token=bob.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), path
    r = await api.delete(f"{V1}/user_reports/{user_report['id']}", token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")

    # Resolving a report deletes it.
    r = await api.delete(f"{V1}/event_reports/{report['id']}", token=t)
    assert r.status == 200 and r.body == {}
    assert (await api.get(V1 + "/event_reports", token=t)).body["total"] == 0
    r = await api.delete(f"{V1}/event_reports/{report['id']}", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert (await api.get(V1 + "/user_reports", token=t)).body["total"] == 1
