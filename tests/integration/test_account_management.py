"""Password change, deactivation, devices (with UIA), profiles."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User


def password_auth(
    user: User, session: str | None = None, password: str | None = None
) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": password if password is not None else user.password,
    }
    if session is not None:
        auth["session"] = session
    return auth


async def test_password_change_logs_out_other_devices(api: Api) -> None:
    alice = await api.register("alice")
    other = (await api.login("alice", alice.password)).body["access_token"]
    r = await api.post(
        "/account/password", {"new_password": "new pass 1"}, token=alice.access_token
    )
    assert r.status == 401
    assert r.body["flows"] == [{"stages": ["m.login.password"]}]
    session = r.body["session"]
    # Wrong current password: the stage fails, nothing changes.
    r = await api.post(
        "/account/password",
        {"new_password": "new pass 1", "auth": password_auth(alice, session, "wrong")},
        token=alice.access_token,
    )
    assert (r.status, r.errcode) == (401, "M_FORBIDDEN")
    assert (await api.login("alice", alice.password)).status == 200
    r = await api.post(
        "/account/password",
        {"new_password": "new pass 1", "auth": password_auth(alice, session)},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body == {}
    assert (await api.login("alice", alice.password)).status == 403
    assert (await api.login("alice", "new pass 1")).status == 200
    # The device that made the request stays; the others are logged out.
    assert (await api.get("/account/whoami", token=alice.access_token)).status == 200
    r = await api.get("/account/whoami", token=other)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")


async def test_password_change_keeping_devices(api: Api) -> None:
    alice = await api.register("alice")
    other = (await api.login("alice", alice.password)).body["access_token"]
    r = await api.post(
        "/account/password",
        {"new_password": "new pass 2", "logout_devices": False, "auth": password_auth(alice)},
        token=alice.access_token,
    )
    assert r.status == 200
    assert (await api.get("/account/whoami", token=other)).status == 200
    assert (await api.login("alice", alice.password)).status == 403
    assert (await api.login("alice", "new pass 2")).status == 200


async def test_uia_session_is_bound_to_user(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/account/password", {"new_password": "x"}, token=alice.access_token)
    session = r.body["session"]
    # Bob cannot use alice's session, nor name alice in his auth.
    r = await api.post(
        "/account/password",
        {"new_password": "x", "auth": password_auth(bob, session)},
        token=bob.access_token,
    )
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.post(
        "/account/password",
        {"new_password": "x", "auth": password_auth(alice)},
        token=bob.access_token,
    )
    # Another user's credentials are refused outright (403), not retried (as Synapse).
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    assert (await api.login("alice", alice.password)).status == 200
    assert (await api.login("bob", bob.password)).status == 200


async def test_deactivate(api: Api) -> None:
    alice = await api.register("alice")
    other = (await api.login("alice", alice.password)).body["access_token"]
    r = await api.post("/account/deactivate", {}, token=alice.access_token)
    assert r.status == 401 and r.body["flows"] == [{"stages": ["m.login.password"]}]
    r = await api.post(
        "/account/deactivate",
        {"auth": password_auth(alice, r.body["session"])},
        token=alice.access_token,
    )
    assert r.status == 200
    assert r.body["id_server_unbind_result"] == "no-support"
    for token in (alice.access_token, other):
        r = await api.get("/account/whoami", token=token)
        assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    assert (await api.login("alice", alice.password)).status == 403
    # The user id stays taken; the profile is gone.
    r = await api.get("/register/available", params={"username": "alice"})
    assert (r.status, r.errcode) == (400, "M_USER_IN_USE")
    r = await api.get(f"/profile/{alice.user_id}")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_devices_list_get_put_delete(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    login = await api.login("alice", alice.password, device_id="PHONE")
    phone_token = login.body["access_token"]

    r = await api.get("/devices", token=alice.access_token)
    assert r.status == 200
    ids = sorted(d["device_id"] for d in r.body["devices"])
    assert ids == sorted([alice.device_id, "PHONE"])
    for d in r.body["devices"]:
        assert set(d) >= {"device_id", "display_name", "last_seen_ts"}

    # A device without a name: the key is absent, never null (the schema says string).
    r = await api.get("/devices/PHONE", token=alice.access_token)
    assert r.status == 200 and r.body["device_id"] == "PHONE"
    assert "display_name" not in r.body and None not in r.body.values()
    r = await api.put("/devices/PHONE", {"display_name": "My phone"}, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    r = await api.get("/devices/PHONE", token=alice.access_token)
    assert r.body["display_name"] == "My phone" and r.body["device_id"] == "PHONE"
    r = await api.put("/devices/PHONE", {"display_name": 7}, token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")

    # Devices of other users are invisible.
    for method in ("GET", "PUT"):
        r = await api.request(
            method, "/devices/PHONE", {"display_name": "x"}, token=bob.access_token
        )
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), method
    r = await api.get("/devices/NOSUCH", token=alice.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.delete("/devices/PHONE", {}, token=bob.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    # DELETE needs UIA.
    r = await api.delete("/devices/PHONE", {}, token=alice.access_token)
    assert r.status == 401 and r.body["flows"] == [{"stages": ["m.login.password"]}]
    r = await api.delete(
        "/devices/PHONE",
        {"auth": password_auth(alice, r.body["session"], "wrong")},
        token=alice.access_token,
    )
    assert (r.status, r.errcode) == (401, "M_FORBIDDEN")
    assert (await api.get("/account/whoami", token=phone_token)).status == 200
    r = await api.delete("/devices/PHONE", {"auth": password_auth(alice)}, token=alice.access_token)
    assert r.status == 200 and r.body == {}
    r = await api.get("/account/whoami", token=phone_token)
    assert (r.status, r.errcode) == (401, "M_UNKNOWN_TOKEN")
    r = await api.get("/devices/PHONE", token=alice.access_token)
    assert r.status == 404


async def test_delete_devices(api: Api) -> None:
    alice = await api.register("alice")
    tokens = {}
    for dev in ("D1", "D2", "D3"):
        tokens[dev] = (await api.login("alice", alice.password, device_id=dev)).body["access_token"]
    r = await api.post("/delete_devices", {"devices": ["D1", "D2"]}, token=alice.access_token)
    assert r.status == 401 and "session" in r.body
    r = await api.post("/delete_devices", {"devices": "D1"}, token=alice.access_token)
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    r = await api.post(
        "/delete_devices",
        {"devices": ["D1", "D2", "UNKNOWN"], "auth": password_auth(alice)},
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    devices = await api.get("/devices", token=alice.access_token)
    assert sorted(d["device_id"] for d in devices.body["devices"]) == sorted(
        [alice.device_id, "D3"]
    )
    for dev, ok in (("D1", False), ("D2", False), ("D3", True)):
        r = await api.get("/account/whoami", token=tokens[dev])
        assert (r.status == 200) is ok, dev


async def test_profiles(api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.get(f"/profile/{alice.user_id}")
    assert r.status == 200 and r.body == {"displayname": "alice"}
    r = await api.put(
        f"/profile/{alice.user_id}/displayname",
        {"displayname": "Alice A."},
        token=alice.access_token,
    )
    assert r.status == 200 and r.body == {}
    r = await api.put(
        f"/profile/{alice.user_id}/avatar_url",
        {"avatar_url": "mxc://localhost/abcdef"},
        token=alice.access_token,
    )
    assert r.status == 200
    r = await api.get(f"/profile/{alice.user_id}")
    assert r.body == {"displayname": "Alice A.", "avatar_url": "mxc://localhost/abcdef"}
    r = await api.get(f"/profile/{alice.user_id}/displayname")
    assert r.body == {"displayname": "Alice A."}
    r = await api.get(f"/profile/{alice.user_id}/avatar_url", token=bob.access_token)
    assert r.body == {"avatar_url": "mxc://localhost/abcdef"}

    # Someone else's profile: 403, and nothing changes.
    r = await api.put(
        f"/profile/{alice.user_id}/displayname", {"displayname": "Mallory"}, token=bob.access_token
    )
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    r = await api.put(f"/profile/{alice.user_id}/displayname", {"displayname": "x"})
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    r = await api.put(
        f"/profile/{alice.user_id}/displayname", {"displayname": 42}, token=alice.access_token
    )
    assert (r.status, r.errcode) == (400, "M_BAD_JSON")
    r = await api.put(
        f"/profile/{alice.user_id}/displayname",
        {"displayname": "a\u0000b"},
        token=alice.access_token,
    )
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    assert (await api.get(f"/profile/{alice.user_id}/displayname")).body == {
        "displayname": "Alice A."
    }

    # Clearing the avatar removes the field.
    r = await api.put(
        f"/profile/{alice.user_id}/avatar_url", {"avatar_url": None}, token=alice.access_token
    )
    assert r.status == 200
    r = await api.get(f"/profile/{alice.user_id}/avatar_url")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")

    for path in ("/profile/@nobody:localhost", "/profile/@nobody:localhost/displayname"):
        r = await api.get(path)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND"), path


async def test_devices_last_seen(api: Api) -> None:
    alice = await api.register("alice")
    r = await api.get("/devices", token=alice.access_token)
    (device,) = r.body["devices"]
    assert device["last_seen_ip"] == "127.0.0.1"
    assert isinstance(device["last_seen_ts"], int) and device["last_seen_ts"] > 1_600_000_000_000
    # Behind a reverse proxy on loopback, X-Forwarded-For names the client.
    login = await api.login("alice", alice.password, device_id="PROXIED")
    r = await api.get(
        "/account/whoami",
        token=login.body["access_token"],
        headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1"},
    )
    assert r.status == 200
    r = await api.get("/devices/PROXIED", token=alice.access_token)
    assert r.body["last_seen_ip"] == "203.0.113.7"


async def test_uia_session_is_bound_to_its_target(api: Api) -> None:
    """A session started to delete one device cannot delete another (Sytest 13ui-auth)."""
    alice = await api.register("alice")
    for device in ("ONE", "TWO"):
        assert (await api.login("alice", alice.password, device_id=device)).status == 200
    r = await api.delete("/devices/ONE", {}, token=alice.access_token)
    assert r.status == 401
    session = r.body["session"]
    r = await api.delete(
        "/devices/TWO", {"auth": password_auth(alice, session)}, token=alice.access_token
    )
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    assert (await api.get("/devices/TWO", token=alice.access_token)).status == 200
    # A wrong password: 401 again, with the (empty) list of completed stages.
    wrong = {**password_auth(alice, session), "password": "wrong"}
    r = await api.delete("/devices/ONE", {"auth": wrong}, token=alice.access_token)
    assert r.status == 401 and r.body["completed"] == [] and r.body["session"] == session
    r = await api.delete(
        "/devices/ONE", {"auth": password_auth(alice, session)}, token=alice.access_token
    )
    assert r.status == 200
    assert (await api.get("/devices/ONE", token=alice.access_token)).status == 404


async def test_whois_self_only_unless_admin(api: Api) -> None:
    """GET /admin/whois/{userId}: a user's devices with ip, last_seen and user_agent
    (Sytest 48admin); only for themself or a server admin."""
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.get(
        f"/admin/whois/{alice.user_id}",
        token=alice.access_token,
        headers={"User-Agent": "whois-test/1.0"},
    )
    assert r.status == 200, r.body
    assert r.body["user_id"] == alice.user_id
    [device] = r.body["devices"].values()
    [conn] = device["sessions"][0]["connections"]
    assert conn["ip"] and conn["last_seen"] > 0 and conn["user_agent"] == "whois-test/1.0"
    r = await api.get(f"/admin/whois/{alice.user_id}", token=bob.access_token)
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
