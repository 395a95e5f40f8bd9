"""Cross-signing over real HTTP with real ed25519 keys; /versions advertises it."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api, User
from tests.integration.e2ee_device import CrossSigningKey, Device


def keyset(user_id: str) -> tuple[CrossSigningKey, CrossSigningKey, CrossSigningKey]:
    return (
        CrossSigningKey(user_id, "master"),
        CrossSigningKey(user_id, "self_signing"),
        CrossSigningKey(user_id, "user_signing"),
    )


def upload_body(msk: CrossSigningKey, ssk: CrossSigningKey, usk: CrossSigningKey) -> dict[str, Any]:
    return {
        "master_key": msk.obj(),
        "self_signing_key": msk.sign(ssk.obj()),
        "user_signing_key": msk.sign(usk.obj()),
    }


async def setup_user(api: Api, name: str) -> tuple[User, Device, tuple[CrossSigningKey, ...]]:
    user = await api.register(name)
    dev = Device(user.user_id, user.device_id)
    r = await api.post("/keys/upload", {"device_keys": dev.device_keys()}, token=user.access_token)
    assert r.status == 200
    keys = keyset(user.user_id)
    r = await api.post("/keys/device_signing/upload", upload_body(*keys), token=user.access_token)
    assert r.status == 200, r.body  # first upload: no UIA
    return user, dev, keys


async def test_versions_advertises_cross_signing(api: Api) -> None:
    r = await api.get("/_matrix/client/versions")
    assert r.body["unstable_features"]["org.matrix.e2e_cross_signing"] is True


async def test_device_signing_upload_and_uia(api: Api) -> None:
    alice, _, (msk, ssk, usk) = await setup_user(api, "alice")
    bob = await api.register("bob")
    r = await api.post("/keys/query", {"device_keys": {alice.user_id: []}}, token=bob.access_token)
    assert r.body["master_keys"][alice.user_id]["keys"] == {msk.key_id: msk.public}
    assert r.body["self_signing_keys"][alice.user_id]["keys"] == {ssk.key_id: ssk.public}
    assert alice.user_id not in r.body["user_signing_keys"]  # only for alice herself
    r = await api.post(
        "/keys/query", {"device_keys": {alice.user_id: []}}, token=alice.access_token
    )
    assert r.body["user_signing_keys"][alice.user_id]["keys"] == {usk.key_id: usk.public}

    # Repeating the same keys needs no UIA (idempotent); new keys do.
    same = upload_body(msk, ssk, usk)
    r = await api.post("/keys/device_signing/upload", same, token=alice.access_token)
    assert r.status == 200, r.body
    new = upload_body(*keyset(alice.user_id))
    r = await api.post("/keys/device_signing/upload", new, token=alice.access_token)
    assert r.status == 401 and "session" in r.body
    assert r.body["flows"] == [{"stages": ["m.login.password"]}]
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "wrong",
        "session": r.body["session"],
    }
    r = await api.post(
        "/keys/device_signing/upload", {**new, "auth": auth}, token=alice.access_token
    )
    assert r.status == 401 and r.errcode == "M_FORBIDDEN"
    auth["password"] = alice.password
    r = await api.post(
        "/keys/device_signing/upload", {**new, "auth": auth}, token=alice.access_token
    )
    assert r.status == 200, r.body
    r = await api.post("/keys/query", {"device_keys": {alice.user_id: []}}, token=bob.access_token)
    assert r.body["master_keys"][alice.user_id]["keys"] == new["master_key"]["keys"]


async def test_device_signing_upload_checks_signatures(api: Api) -> None:
    alice = await api.register("alice")
    msk, ssk, _usk = keyset(alice.user_id)
    bad = {"master_key": msk.obj(), "self_signing_key": ssk.obj()}  # ssk unsigned
    r = await api.post("/keys/device_signing/upload", bad, token=alice.access_token)
    assert r.status == 400 and r.errcode == "M_INVALID_SIGNATURE"
    r = await api.post(
        "/keys/device_signing/upload",
        {"self_signing_key": msk.sign(ssk.obj())},
        token=alice.access_token,
    )
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
    r = await api.post(
        "/keys/query", {"device_keys": {alice.user_id: []}}, token=alice.access_token
    )
    assert r.body["master_keys"] == {}


async def test_signatures_upload(api: Api) -> None:
    alice, adev, (amsk, assk, ausk) = await setup_user(api, "alice")
    bob, _, (bmsk, _, _) = await setup_user(api, "bob")

    signed_device = assk.sign(adev.device_keys())
    signed_master = adev.sign(amsk.obj())
    bobs_master = ausk.sign(bmsk.obj())
    forged = CrossSigningKey(alice.user_id, "self_signing")
    forged_sig = forged.sign(adev.device_keys())
    forged_sig["signatures"][alice.user_id] = {
        assk.key_id: forged_sig["signatures"][alice.user_id][forged.key_id]
    }
    body = {
        alice.user_id: {adev.device_id: signed_device, amsk.public: signed_master},
        bob.user_id: {bmsk.public: bobs_master},
    }
    r = await api.post("/keys/signatures/upload", body, token=alice.access_token)
    assert r.status == 200 and r.body["failures"] == {}, r.body

    r = await api.post(
        "/keys/signatures/upload",
        {alice.user_id: {adev.device_id: forged_sig, "NOSUCHKEY": adev.device_keys()}},
        token=alice.access_token,
    )
    fails = r.body["failures"][alice.user_id]
    assert fails[adev.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    assert fails["NOSUCHKEY"]["errcode"] == "M_NOT_FOUND"

    q = {"device_keys": {alice.user_id: [], bob.user_id: []}}
    r = await api.post("/keys/query", q, token=alice.access_token)
    dev_sigs = r.body["device_keys"][alice.user_id][adev.device_id]["signatures"][alice.user_id]
    assert dev_sigs[assk.key_id] == signed_device["signatures"][alice.user_id][assk.key_id]
    assert f"ed25519:{adev.device_id}" in dev_sigs
    master_sigs = r.body["master_keys"][alice.user_id]["signatures"][alice.user_id]
    assert f"ed25519:{adev.device_id}" in master_sigs
    # alice sees her signature on bob's master key ...
    assert ausk.key_id in r.body["master_keys"][bob.user_id]["signatures"][alice.user_id]
    # ... others (here bob himself) do not.
    r = await api.post("/keys/query", q, token=bob.access_token)
    assert alice.user_id not in r.body["master_keys"][bob.user_id].get("signatures", {})


async def test_unstable_upload_paths(api: Api) -> None:
    """The MSC1756 unstable paths (Sytest uses them) reach the same handlers."""
    alice = await api.register("alice")
    keys = keyset(alice.user_id)
    r = await api.post(
        "/_matrix/client/unstable/keys/device_signing/upload",
        upload_body(*keys),
        token=alice.access_token,
    )
    assert r.status == 200, r.body
    r = await api.post(
        "/keys/query", {"device_keys": {alice.user_id: []}}, token=alice.access_token
    )
    # Answered as uploaded: the master key came without signatures, so none are added.
    assert r.body["master_keys"][alice.user_id] == keys[0].obj()
    r = await api.post(
        "/_matrix/client/unstable/keys/signatures/upload", {}, token=alice.access_token
    )
    assert r.status == 200 and r.body == {"failures": {}}


async def test_user_signing_key_change_is_news_for_its_owner_only(api: Api) -> None:
    alice, _, (msk, ssk, _usk) = await setup_user(api, "alice")
    bob = await api.register("bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    since = {}
    for user in (alice, bob):
        since[user.user_id] = (await api.get("/sync", token=user.access_token)).body["next_batch"]
    usk = CrossSigningKey(alice.user_id, "user_signing")
    auth = {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": alice.password,
    }
    r = await api.post(
        "/keys/device_signing/upload",
        {"user_signing_key": msk.sign(usk.obj()), "auth": auth},
        token=alice.access_token,
    )
    if r.status == 401:  # UIA asks for a session first
        auth["session"] = r.body["session"]
        r = await api.post(
            "/keys/device_signing/upload",
            {"user_signing_key": msk.sign(usk.obj()), "auth": auth},
            token=alice.access_token,
        )
    assert r.status == 200, r.body
    changed = {}
    for user in (alice, bob):
        r = await api.get(
            "/sync", token=user.access_token, params={"since": since[user.user_id], "timeout": "0"}
        )
        changed[user.user_id] = r.body["device_lists"]["changed"]
    assert alice.user_id in changed[alice.user_id]
    assert alice.user_id not in changed[bob.user_id]

    # A new self-signing key is everyone's news.
    since_bob = r.body["next_batch"]
    new_ssk = CrossSigningKey(alice.user_id, "self_signing")
    r = await api.post(
        "/keys/device_signing/upload",
        {"self_signing_key": msk.sign(new_ssk.obj()), "auth": auth},
        token=alice.access_token,
    )
    if r.status == 401:
        auth["session"] = r.body["session"]
        r = await api.post(
            "/keys/device_signing/upload",
            {"self_signing_key": msk.sign(new_ssk.obj()), "auth": auth},
            token=alice.access_token,
        )
    assert r.status == 200, r.body
    r = await api.get("/sync", token=bob.access_token, params={"since": since_bob, "timeout": "0"})
    assert alice.user_id in r.body["device_lists"]["changed"]
    assert ssk.public != new_ssk.public


async def test_signing_another_users_master_key_is_news_for_the_signer_only(api: Api) -> None:
    alice, _, (a_msk, _a_ssk, a_usk) = await setup_user(api, "alice")
    bob, _, (b_msk, _b_ssk, _b_usk) = await setup_user(api, "bob")
    r = await api.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    room_id = r.body["room_id"]
    assert (await api.post(f"/join/{room_id}", {}, token=bob.access_token)).status == 200
    since = {}
    for user in (alice, bob):
        since[user.user_id] = (await api.get("/sync", token=user.access_token)).body["next_batch"]
    signed = a_usk.sign(b_msk.obj())
    r = await api.post(
        "/keys/signatures/upload", {bob.user_id: {b_msk.public: signed}}, token=alice.access_token
    )
    assert r.status == 200 and r.body.get("failures", {}) == {}, r.body
    changed = {}
    for user in (alice, bob):
        r = await api.get(
            "/sync", token=user.access_token, params={"since": since[user.user_id], "timeout": "0"}
        )
        changed[user.user_id] = r.body["device_lists"]["changed"]
    assert bob.user_id in changed[alice.user_id]
    assert changed[bob.user_id] == []
    assert a_msk.public != b_msk.public
