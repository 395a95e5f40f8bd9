"""More operations checked against the spec's OpenAPI schemas with the conformance test's
client (every answer validated as it arrives): pushers, OpenID, whois, reports, account
management, cross-signing uploads, media (authenticated and legacy), discovery. The test
fails if an operation listed here was not reached."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.integration.admin_support import make_admin
from tests.integration.test_e2ee_cross_signing import keyset, upload_body
from tests.integration.test_openapi_conformance import CheckedApi

V1 = "/_matrix/client/v1"
V3 = "/_matrix/client/v3"
MEDIA_V3 = "/_matrix/media/v3"
COVERED = frozenset(
    {
        ("GET", "/.well-known/matrix/client"),
        ("GET", V3 + "/pushers"),
        ("POST", V3 + "/pushers/set"),
        ("POST", V3 + "/user/{userId}/openid/request_token"),
        ("GET", V3 + "/admin/whois/{userId}"),
        ("POST", V3 + "/users/{userId}/report"),
        ("GET", V3 + "/register/available"),
        ("POST", V3 + "/delete_devices"),
        ("POST", V3 + "/keys/device_signing/upload"),
        ("POST", V3 + "/keys/signatures/upload"),
        ("POST", V3 + "/logout"),
        ("POST", V3 + "/logout/all"),
        ("POST", V3 + "/account/deactivate"),
        ("GET", V1 + "/register/m.login.registration_token/validity"),
        ("GET", V1 + "/media/config"),
        ("GET", V1 + "/media/download/{serverName}/{mediaId}"),
        ("GET", V1 + "/media/download/{serverName}/{mediaId}/{fileName}"),
        ("GET", V1 + "/media/thumbnail/{serverName}/{mediaId}"),
        ("GET", MEDIA_V3 + "/config"),
        ("POST", MEDIA_V3 + "/upload"),
        ("POST", "/_matrix/media/v1/create"),
        ("PUT", MEDIA_V3 + "/upload/{serverName}/{mediaId}"),
    }
)

# A 1x1 PNG: something the thumbnailer can read.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
    "0000000d4944415478da63f8cfc0f01f0005000201a5d3a7e10000000049454e44ae426082"
)


def password_auth(user_id: str, password: str, session: str | None = None) -> dict[str, Any]:
    auth: dict[str, Any] = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user_id},
        "password": password,
    }
    if session is not None:
        auth["session"] = session
    return auth


async def test_more_answers_match_the_spec(make_server: ServerFactory) -> None:
    server = await make_server(public_baseurl="http://127.0.0.1:8008")
    async with CheckedApi(server.client_url) as api:
        alice = await api.register("alice")
        bob = await api.register("bob")
        root = await make_admin(server, api)
        a = alice.access_token
        assert (await api.get("/.well-known/matrix/client")).status == 200
        assert (await api.get("/register/available", params={"username": "carol"})).status == 200
        taken = await api.get("/register/available", params={"username": "alice"})
        assert taken.status == 400

        pusher = {
            "kind": "http",
            "app_id": "org.example.app",
            "pushkey": "k1",
            "app_display_name": "Example",
            "device_display_name": "Phone",
            "lang": "en",
            "data": {"url": "https://push.example.org/_matrix/push/v1/notify"},
        }
        assert (await api.post("/pushers/set", pusher, token=a)).status == 200
        assert (await api.get("/pushers", token=a)).status == 200
        openid = await api.post(f"/user/{alice.user_id}/openid/request_token", {}, token=a)
        assert openid.status == 200
        assert (await api.get(f"/admin/whois/{bob.user_id}", token=root.access_token)).status == 200
        assert (await api.get(f"/admin/whois/{bob.user_id}", token=a)).status == 403
        report = await api.post(f"/users/{bob.user_id}/report", {"reason": "spam"}, token=a)
        assert report.status == 200

        # First upload: no UIA; replacing the keys needs it (a failed stage answers 401).
        first_keys = upload_body(*keyset(alice.user_id))
        uploaded = await api.post("/keys/device_signing/upload", first_keys, token=a)
        assert uploaded.status == 200
        new_keys = upload_body(*keyset(alice.user_id))
        wrong = {**new_keys, "auth": password_auth(alice.user_id, "wrong")}
        failed = await api.post("/keys/device_signing/upload", wrong, token=a)
        assert failed.status == 401
        auth = password_auth(alice.user_id, alice.password, failed.body["session"])
        replaced = await api.post(
            "/keys/device_signing/upload", {**new_keys, "auth": auth}, token=a
        )
        assert replaced.status == 200
        signatures = await api.post("/keys/signatures/upload", {}, token=a)
        assert signatures.status == 200

        validity = await api.get(
            V1 + "/register/m.login.registration_token/validity", params={"token": "nope"}
        )
        assert validity.status in (200, 403)

        assert (await api.get(V1 + "/media/config", token=a)).status == 200
        assert (await api.get(MEDIA_V3 + "/config", token=a)).status == 200
        up = await api.post(
            MEDIA_V3 + "/upload",
            data=PNG,
            headers={"Content-Type": "image/png"},
            params={"filename": "dot.png"},
            token=a,
        )
        assert up.status == 200
        origin, media_id = up.body["content_uri"].removeprefix("mxc://").split("/")
        got = await api.get(f"{V1}/media/download/{origin}/{media_id}", token=a)
        assert got.status == 200 and got.body == PNG
        named = await api.get(f"{V1}/media/download/{origin}/{media_id}/dot.png", token=a)
        assert named.status == 200
        thumb = await api.get(
            f"{V1}/media/thumbnail/{origin}/{media_id}",
            params={"width": "32", "height": "32", "method": "scale"},
            token=a,
        )
        assert thumb.status == 200
        created = await api.post("/_matrix/media/v1/create", {}, token=a)
        assert created.status == 200
        origin, media_id = created.body["content_uri"].removeprefix("mxc://").split("/")
        put = await api.put(
            f"{MEDIA_V3}/upload/{origin}/{media_id}",
            data=PNG,
            headers={"Content-Type": "image/png"},
            token=a,
        )
        assert put.status == 200

        second = (await api.login("alice", alice.password)).body["access_token"]
        third = await api.login("alice", alice.password)
        devices = [third.body["device_id"]]
        wrong = {"devices": devices, "auth": password_auth(alice.user_id, "wrong")}
        failed = await api.post("/delete_devices", wrong, token=a)
        assert failed.status == 401
        auth = password_auth(alice.user_id, alice.password, failed.body["session"])
        deleted = await api.post("/delete_devices", {"devices": devices, "auth": auth}, token=a)
        assert deleted.status == 200
        assert (await api.post("/logout", {}, token=second)).status == 200
        assert (await api.post("/logout/all", {}, token=bob.access_token)).status == 200

        carol = await api.register("carol")
        first = await api.post(
            "/account/deactivate",
            {"auth": password_auth(carol.user_id, "wrong")},
            token=carol.access_token,
        )
        assert first.status == 401
        auth = password_auth(carol.user_id, carol.password, first.body["session"])
        gone = await api.post("/account/deactivate", {"auth": auth}, token=carol.access_token)
        assert gone.status == 200

    missing = COVERED - api.covered
    assert not missing, f"not reached: {sorted(missing)}"
