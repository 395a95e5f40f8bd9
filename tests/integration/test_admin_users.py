"""Admin API for accounts, over HTTP: Synapse's paths and shapes, admins only."""

from __future__ import annotations

import pytest

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.admin_support import V1, V2, make_admin


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """Guest accounts are off by default; this module's tests use them."""
    return await make_server(registration={"allow_guests": True})


ADMIN_ONLY = [
    ("GET", V1 + "/server_version"),
    ("GET", V2 + "/users"),
    ("GET", V2 + "/users/@bob:localhost"),
    ("PUT", V2 + "/users/@bob:localhost"),
    ("GET", V2 + "/users/@bob:localhost/devices"),
    ("POST", V1 + "/deactivate/@bob:localhost"),
    ("POST", V1 + "/reset_password/@bob:localhost"),
    ("GET", V1 + "/whois/@bob:localhost"),
]


async def test_only_admins(server: RunningServer, api: Api) -> None:
    bob = await api.register("bob")
    for method, path in ADMIN_ONLY:
        r = await api.request(method, path, {"new_password": "x"})
        assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN"), (method, path, r.body)
        r = await api.request(method, path, {"new_password": "x"}, token=bob.access_token)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN"), (method, path, r.body)
    # Nothing changed: bob still logs in with his password.
    assert (await api.login("bob", bob.password)).status == 200
    # A user demoted by an admin loses admin access at once (cached sessions too).
    root = await make_admin(server, api)
    assert (await api.get(V1 + "/server_version", token=root.access_token)).status == 200
    r = await api.put(V2 + "/users/@root:localhost", {"admin": False}, token=root.access_token)
    assert r.status == 200 and r.body["admin"] == 0
    r = await api.get(V1 + "/server_version", token=root.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")


async def test_server_version_and_list_users(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    r = await api.get(V1 + "/server_version", token=t)
    assert r.status == 200 and isinstance(r.body["server_version"], str)
    for name in ("alice", "amelia", "carol", "dave"):
        await api.register(name)
    guest = await api.post("/register", {}, params={"kind": "guest"})
    assert guest.status == 200
    r = await api.get(V2 + "/users", token=t)
    assert r.status == 200, r.body
    assert r.body["total"] == 6  # five users and the guest
    assert "next_token" not in r.body
    r = await api.get(V2 + "/users", token=t, params={"limit": "2", "guests": "false"})
    assert [u["name"] for u in r.body["users"]] == ["@alice:localhost", "@amelia:localhost"]
    assert r.body["next_token"] == "2"
    first = r.body["users"][0]
    for key in ("is_guest", "admin", "deactivated", "shadow_banned"):
        assert first[key] == 0, key
    assert first["erased"] is False and first["displayname"] == "alice"
    assert isinstance(first["creation_ts"], int) and first["creation_ts"] > 10**12  # ms
    r = await api.get(V2 + "/users", token=t, params={"from": "4", "limit": "2"})
    assert len(r.body["users"]) == 2 and "next_token" not in r.body
    r = await api.get(V2 + "/users", token=t, params={"from": "2", "guests": "false"})
    assert [u["name"] for u in r.body["users"]] == [
        "@carol:localhost",
        "@dave:localhost",
        "@root:localhost",
    ]
    r = await api.get(V2 + "/users", token=t, params={"guests": "false"})
    assert r.body["total"] == 5 and all(u["is_guest"] == 0 for u in r.body["users"])
    r = await api.get(V2 + "/users", token=t, params={"name": "AM"})
    assert [u["name"] for u in r.body["users"]] == ["@amelia:localhost"]
    r = await api.get(V2 + "/users", token=t, params={"name": "%"})
    assert r.body["users"] == []  # LIKE wildcards match only themselves
    r = await api.get(V2 + "/users", token=t, params={"order_by": "name", "dir": "b"})
    names = [u["name"] for u in r.body["users"] if u["is_guest"] == 0]
    assert names == sorted(names, reverse=True)
    for bad in (
        {"from": "-1"},
        {"limit": "x"},
        {"guests": "yes"},
        {"dir": "up"},
        {"order_by": "x"},
    ):
        r = await api.get(V2 + "/users", token=t, params=bad)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), bad


async def test_create_modify_and_deactivate(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    r = await api.put(
        V2 + "/users/@newbie:localhost",
        {"password": "pw-newbie", "displayname": "Newbie", "admin": False},
        token=t,
    )
    assert r.status == 201, r.body
    assert r.body["name"] == "@newbie:localhost" and r.body["displayname"] == "Newbie"
    assert (await api.login("newbie", "pw-newbie")).status == 200
    r = await api.get(V2 + "/users/@newbie:localhost", token=t)
    assert r.status == 200 and r.body["admin"] == 0 and r.body["deactivated"] == 0
    assert r.body["creation_ts"] < 10**11  # Synapse answers one user in seconds

    # Modify: new password logs every device out; display name; admin flag.
    session = (await api.login("newbie", "pw-newbie")).body["access_token"]
    r = await api.put(
        V2 + "/users/@newbie:localhost",
        {"password": "pw-2", "displayname": "N. Ewbie", "admin": True},
        token=t,
    )
    assert r.status == 200 and r.body["displayname"] == "N. Ewbie" and r.body["admin"] == 1
    assert (await api.get("/account/whoami", token=session)).status == 401
    assert (await api.login("newbie", "pw-newbie")).status == 403
    assert (await api.login("newbie", "pw-2")).status == 200
    profile = await api.get("/profile/@newbie:localhost/displayname")
    assert profile.body == {"displayname": "N. Ewbie"}

    # Bad input changes nothing.
    for body in (
        {"admin": "yes"},
        {"password": 5},
        {"displayname": ["x"]},
        {"threepids": [{"medium": "fax", "address": "a@b.c"}]},
        {"deactivated": "true"},
    ):
        r = await api.put(V2 + "/users/@newbie:localhost", body, token=t)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), body
    r = await api.put(V2 + "/users/@someone:elsewhere.org", {"password": "x"}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.put(V2 + "/users/not-a-user-id", {}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.get(V2 + "/users/@nobody:localhost", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert (await api.login("newbie", "pw-2")).status == 200

    # Deactivate with PUT; reactivating needs a password.
    r = await api.put(V2 + "/users/@newbie:localhost", {"deactivated": True}, token=t)
    assert r.status == 200 and r.body["deactivated"] == 1
    assert (await api.login("newbie", "pw-2")).status == 403
    r = await api.put(V2 + "/users/@newbie:localhost", {"deactivated": False}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.put(
        V2 + "/users/@newbie:localhost", {"deactivated": False, "password": "pw-3"}, token=t
    )
    assert r.status == 200 and r.body["deactivated"] == 0
    assert (await api.login("newbie", "pw-3")).status == 200


async def test_deactivate_erase_and_reset_password(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    bob = await api.register("bob")
    await api.put(
        "/profile/@bob:localhost/displayname", {"displayname": "Bob B"}, token=bob.access_token
    )

    r = await api.post(V1 + "/reset_password/@bob:localhost", {"new_password": "pw-new"}, token=t)
    assert r.status == 200 and r.body == {}
    assert (await api.get("/account/whoami", token=bob.access_token)).status == 401
    assert (await api.login("bob", bob.password)).status == 403
    kept = (await api.login("bob", "pw-new")).body["access_token"]
    r = await api.post(
        V1 + "/reset_password/@bob:localhost",
        {"new_password": "pw-newer", "logout_devices": False},
        token=t,
    )
    assert r.status == 200
    assert (await api.get("/account/whoami", token=kept)).status == 200
    for body in (
        {},
        {"new_password": 7},
        {"new_password": ""},
        {"new_password": "x", "logout_devices": 1},
    ):
        r = await api.post(V1 + "/reset_password/@bob:localhost", body, token=t)
        assert r.status == 400 and r.errcode in ("M_BAD_JSON", "M_INVALID_PARAM"), body
    r = await api.post(V1 + "/reset_password/@ghost:localhost", {"new_password": "x"}, token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    r = await api.post(V1 + "/deactivate/@bob:localhost", {"erase": "yes"}, token=t)
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    assert (await api.get("/account/whoami", token=kept)).status == 200
    r = await api.post(V1 + "/deactivate/@bob:localhost", {"erase": True}, token=t)
    assert r.status == 200 and r.body == {"id_server_unbind_result": "success"}
    assert (await api.get("/account/whoami", token=kept)).status == 401
    assert (await api.login("bob", "pw-newer")).status == 403
    r = await api.get(V2 + "/users/@bob:localhost", token=t)
    assert r.body["deactivated"] == 1 and r.body["erased"] is True
    assert r.body["displayname"] is None  # erasure removes the profile
    r = await api.get(V2 + "/users", token=t)
    assert "@bob:localhost" not in [u["name"] for u in r.body["users"]]
    r = await api.get(V2 + "/users", token=t, params={"deactivated": "true"})
    assert "@bob:localhost" in [u["name"] for u in r.body["users"]]
    r = await api.post(V1 + "/deactivate/@ghost:localhost", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_whois_and_devices(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    bob = await api.register("bob")
    carol = await api.register("carol")
    assert (await api.get("/account/whoami", token=bob.access_token)).status == 200
    for path in (V1 + "/whois/@bob:localhost", "/admin/whois/@bob:localhost"):
        r = await api.get(path, token=root.access_token)
        assert r.status == 200, r.body
        assert r.body["user_id"] == "@bob:localhost"
        device = r.body["devices"][bob.device_id]
        (conn,) = device["sessions"][0]["connections"]
        assert conn["ip"] == "127.0.0.1" and isinstance(conn["last_seen"], int)
    # The client API lets users look at themselves, not at others.
    assert (await api.get("/admin/whois/@bob:localhost", token=bob.access_token)).status == 200
    r = await api.get("/admin/whois/@bob:localhost", token=carol.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.get("/admin/whois/@nobody:localhost", token=root.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    r = await api.get(V2 + "/users/@bob:localhost/devices", token=root.access_token)
    assert r.status == 200 and r.body["total"] == 1
    (device,) = r.body["devices"]
    assert device["device_id"] == bob.device_id and device["user_id"] == "@bob:localhost"
    assert device["last_seen_ip"] == "127.0.0.1"
    r = await api.get(V2 + "/users/@nobody:localhost/devices", token=root.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_devices_admin_flag_and_joined_rooms(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    t = root.access_token
    bob = await api.register("bob")
    second = (await api.login("bob", bob.password, device_id="SECOND")).body["access_token"]
    third = (await api.login("bob", bob.password, device_id="THIRD")).body["access_token"]
    base = V2 + "/users/@bob:localhost"

    r = await api.get(base + "/devices/SECOND", token=t)
    assert r.status == 200 and r.body["device_id"] == "SECOND" and r.body["user_id"] == bob.user_id
    r = await api.get(base + "/devices/NOPE", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.delete(base + "/devices/SECOND", token=t)
    assert r.status == 200 and r.body == {}
    assert (await api.get("/account/whoami", token=second)).status == 401
    for body in ({}, {"devices": "THIRD"}, {"devices": [1]}):
        r = await api.post(base + "/delete_devices", body, token=t)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), body
    assert (await api.get("/account/whoami", token=third)).status == 200
    r = await api.post(base + "/delete_devices", {"devices": ["THIRD", "UNKNOWN"]}, token=t)
    assert r.status == 200
    assert (await api.get("/account/whoami", token=third)).status == 401
    r = await api.get(base + "/devices", token=t)
    assert [d["device_id"] for d in r.body["devices"]] == [bob.device_id]

    admin_path = V1 + "/users/@bob:localhost/admin"
    assert (await api.get(admin_path, token=t)).body == {"admin": False}
    r = await api.put(admin_path, {"admin": "true"}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")
    r = await api.put(admin_path, {"admin": True}, token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    assert (await api.put(admin_path, {"admin": True}, token=t)).body == {}
    assert (await api.get(admin_path, token=bob.access_token)).body == {"admin": True}
    r = await api.put(V1 + "/users/@root:localhost/admin", {"admin": False}, token=t)
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")  # no locking oneself out

    r = await api.post("/createRoom", {}, token=bob.access_token)
    room = r.body["room_id"]
    r = await api.get(V1 + "/users/@bob:localhost/joined_rooms", token=t)
    assert r.body == {"joined_rooms": [room], "total": 1}
    r = await api.get(V1 + "/users/@nobody:localhost/joined_rooms", token=t)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
