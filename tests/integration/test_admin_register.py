"""Shared-secret registration at /_synapse/admin/v1/register (nonce + HMAC-SHA1)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from tests.conftest import ServerFactory
from tests.helpers import Api

PATH = "/_synapse/admin/v1/register"
SECRET = "shared-secret-for-tests"


def mac(secret: str, nonce: str, user: str, password: str, admin: bool) -> str:
    # Computed independently, as register_new_matrix_user does.
    msg = b"\x00".join(
        [nonce.encode(), user.encode(), password.encode(), b"admin" if admin else b"notadmin"]
    )
    return hmac.new(secret.encode(), msg, hashlib.sha1).hexdigest()


def body(nonce: str, user: str, password: str, admin: bool, secret: str = SECRET) -> dict[str, Any]:
    return {
        "nonce": nonce,
        "username": user,
        "password": password,
        "admin": admin,
        "mac": mac(secret, nonce, user, password, admin),
    }


async def test_shared_secret_registration(make_server: ServerFactory) -> None:
    server = await make_server(registration={"enabled": False, "shared_secret": SECRET})
    async with Api(server.client_url) as api:
        r = await api.get(PATH)
        assert r.status == 200
        nonce = r.body["nonce"]
        assert isinstance(nonce, str) and len(nonce) >= 16
        r = await api.post(PATH, body(nonce, "root", "pw-root", True))
        assert r.status == 200, r.body
        assert r.body["user_id"] == "@root:localhost"
        me = await api.get("/account/whoami", token=r.body["access_token"])
        assert me.body["user_id"] == "@root:localhost"
        assert (await api.login("root", "pw-root")).status == 200
        user = await server.hs.accounts.store.get_user("@root:localhost")
        assert user is not None and user.is_admin

        # The nonce is single use.
        r = await api.post(PATH, body(nonce, "again", "pw", False))
        assert r.status == 400 and r.errcode == "M_UNKNOWN"
        assert (await api.get("/register/available", params={"username": "again"})).status == 200

        # A wrong mac is refused, and burns the nonce.
        nonce = (await api.get(PATH)).body["nonce"]
        r = await api.post(PATH, body(nonce, "eve", "pw-eve", False, secret="guessed"))
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        tampered = body(nonce, "eve", "pw-eve", False)
        tampered["admin"] = True
        r = await api.post(PATH, tampered)
        assert r.status in (400, 403)
        nonce = (await api.get(PATH)).body["nonce"]
        tampered = body(nonce, "eve", "pw-eve", False)
        tampered["admin"] = True
        r = await api.post(PATH, tampered)
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        assert (await api.login("eve", "pw-eve")).status == 403

        # A non-admin account.
        nonce = (await api.get(PATH)).body["nonce"]
        r = await api.post(PATH, body(nonce, "bot", "pw-bot", False))
        assert r.status == 200
        user = await server.hs.accounts.store.get_user("@bot:localhost")
        assert user is not None and not user.is_admin

        # Username rules still apply.
        nonce = (await api.get(PATH)).body["nonce"]
        r = await api.post(PATH, body(nonce, "bot", "pw", False))
        assert (r.status, r.errcode) == (400, "M_USER_IN_USE")
        r = await api.post(PATH, {"nonce": 1})
        assert (r.status, r.errcode) == (400, "M_BAD_JSON")


async def test_shared_secret_registration_disabled(api: Api) -> None:
    r = await api.get(PATH)
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    r = await api.post(PATH, body("n", "x", "y", True))
    assert r.status == 400 and r.errcode == "M_UNKNOWN"
    assert (await api.get("/register/available", params={"username": "x"})).status == 200
