"""/versions, /.well-known/matrix/client, /capabilities, CORS, unknown query parameters."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.ports import free_port

CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "X-Requested-With, Content-Type, Authorization",
}
SPEC_METHODS = {"GET", "POST", "PUT", "DELETE", "OPTIONS"}


def assert_cors(headers: object) -> None:
    for name, value in CORS.items():
        assert headers[name] == value  # type: ignore[index]
    methods = {m.strip() for m in headers["Access-Control-Allow-Methods"].split(",")}  # type: ignore[index]
    assert SPEC_METHODS <= methods


async def test_versions(api: Api) -> None:
    r = await api.get("/_matrix/client/versions")
    assert r.status == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert "v1.12" in r.body["versions"]
    assert "r0.6.1" in r.body["versions"]
    assert isinstance(r.body["unstable_features"], dict)
    assert_cors(r.headers)


async def test_well_known_client(make_server) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    server: RunningServer = await make_server(client_listener={"port": port})
    assert server.client_url == f"http://127.0.0.1:{port}"
    async with Api(server.client_url) as api:
        r = await api.get("/.well-known/matrix/client")
    assert r.status == 200
    assert r.body == {"m.homeserver": {"base_url": f"http://127.0.0.1:{port}"}}


async def test_well_known_uses_public_baseurl(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(public_baseurl="https://matrix.example.org/")
    async with Api(server.client_url) as api:
        r = await api.get("/.well-known/matrix/client")
    assert r.body == {"m.homeserver": {"base_url": "https://matrix.example.org"}}


async def test_capabilities(api: Api) -> None:
    r = await api.get("/capabilities")
    assert r.status == 401 and r.errcode == "M_MISSING_TOKEN"
    alice = await api.register("alice")
    r = await api.get("/capabilities", token=alice.access_token)
    assert r.status == 200
    caps = r.body["capabilities"]
    assert caps["m.room_versions"] == {
        "default": "12",
        "available": {str(n): "stable" for n in range(1, 13)},
    }
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == {"enabled": True}
    assert caps["m.set_avatar_url"] == {"enabled": True}
    # Legacy r0 prefix answers the same.
    r0 = await api.get("/_matrix/client/r0/capabilities", token=alice.access_token)
    assert r0.body == r.body


async def test_cors_on_success_error_and_preflight(api: Api) -> None:
    r = await api.get("/account/whoami")
    assert r.status == 401
    assert_cors(r.headers)
    r = await api.get("/_matrix/client/v3/no/such/endpoint")
    assert r.status == 404
    assert_cors(r.headers)
    # Preflight on an authenticated endpoint: no token needed, no endpoint logic run.
    r = await api.request(
        "OPTIONS",
        "/account/whoami",
        headers={
            "Origin": "https://app.example.org",
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "Authorization",
        },
    )
    assert r.status == 200
    assert_cors(r.headers)
    # OPTIONS on /register must not register anybody or start a UIA session.
    r = await api.request("OPTIONS", "/register")
    assert r.status == 200
    assert_cors(r.headers)


async def test_unknown_query_parameters_are_ignored(api: Api) -> None:
    r = await api.get("/_matrix/client/versions", params={"foo": "bar", "org.example.flag": "1"})
    assert r.status == 200 and "versions" in r.body
    alice = await api.register("alice")
    r = await api.get(
        "/account/whoami", token=alice.access_token, params={"unknown": "x", "ts": "123"}
    )
    assert r.status == 200 and r.body["user_id"] == "@alice:localhost"
    r = await api.post(
        "/login",
        {
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": "alice"},
            "password": alice.password,
        },
        params={"client_secret_thing": "y"},
    )
    assert r.status == 200


async def test_well_known_server_delegation(make_server) -> None:  # type: ignore[no-untyped-def]
    server = await make_server(federation={"well_known_server": "matrix.example.org:443"})
    async with Api(server.client_url) as api:
        r = await api.get("/.well-known/matrix/server")
    assert r.status == 200 and r.body == {"m.server": "matrix.example.org:443"}


async def test_well_known_server_absent_by_default(api: Api) -> None:
    r = await api.get("/.well-known/matrix/server")
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
