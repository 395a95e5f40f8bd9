"""Registration, login, sessions and account management over real HTTP."""

from __future__ import annotations

from tests.helpers import Api


async def test_register_login_whoami_logout(api: Api) -> None:
    alice = await api.register("alice")
    assert alice.user_id == "@alice:localhost"
    r = await api.get("/account/whoami", token=alice.access_token)
    assert r.status == 200
    assert r.body == {
        "user_id": "@alice:localhost",
        "device_id": alice.device_id,
        "is_guest": False,
    }
    r = await api.login("alice", alice.password)
    assert r.status == 200, r.body
    token2 = r.body["access_token"]
    assert r.body["device_id"] != alice.device_id
    r = await api.post("/logout", token=token2)
    assert r.status == 200
    r = await api.get("/account/whoami", token=token2)
    assert r.status == 401 and r.errcode == "M_UNKNOWN_TOKEN"
    r = await api.get("/account/whoami", token=alice.access_token)
    assert r.status == 200
