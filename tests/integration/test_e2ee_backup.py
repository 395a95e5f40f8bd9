"""Server-side key backup over real HTTP: versions, replacement rules, etag, errors."""

from __future__ import annotations

from typing import Any

from tests.helpers import Api

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"
ROOM = "!room:localhost"


def key(fmi: int, fwd: int, verified: bool, tag: str) -> dict[str, Any]:
    return {
        "first_message_index": fmi,
        "forwarded_count": fwd,
        "is_verified": verified,
        "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag},
    }


async def test_backup_versions(api: Api) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    r = await api.get("/room_keys/version", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.post(
        "/room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "a"}}, token=tok
    )
    assert r.status == 200
    v1 = r.body["version"]
    r = await api.get("/room_keys/version", token=tok)
    assert r.body == {
        "algorithm": ALG,
        "auth_data": {"public_key": "a"},
        "count": 0,
        "etag": r.body["etag"],
        "version": v1,
    }
    r = await api.put(
        f"/room_keys/version/{v1}", {"algorithm": "m.other", "auth_data": {}}, token=tok
    )
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.put(
        f"/room_keys/version/{v1}",
        {"algorithm": ALG, "auth_data": {"public_key": "b"}, "version": "999"},
        token=tok,
    )
    assert r.status == 400 and r.errcode == "M_INVALID_PARAM"
    r = await api.put(
        f"/room_keys/version/{v1}", {"algorithm": ALG, "auth_data": {"public_key": "b"}}, token=tok
    )
    assert r.status == 200
    r = await api.get(f"/room_keys/version/{v1}", token=tok)
    assert r.body["auth_data"] == {"public_key": "b"}
    r = await api.put("/room_keys/version/12345", {"algorithm": ALG, "auth_data": {}}, token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    r = await api.post("/room_keys/version", {"algorithm": 7, "auth_data": {}}, token=tok)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.delete(f"/room_keys/version/{v1}", token=tok)
    assert r.status == 200
    r = await api.delete(f"/room_keys/version/{v1}", token=tok)
    assert r.status == 200  # deleting again succeeds
    r = await api.get("/room_keys/version", token=tok)
    assert r.status == 404
    r = await api.delete("/room_keys/version/777", token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    # Another user cannot see alice's version.
    bob = await api.register("bob")
    r = await api.get(f"/room_keys/version/{v1}", token=bob.access_token)
    assert r.status == 404


async def test_unknown_backup_algorithm_is_opaque(api: Api) -> None:
    """The spec makes the algorithm an opaque string: one the server does not know is kept."""
    alice = await api.register("alice")
    tok = alice.access_token
    body = {"algorithm": "org.example.future", "auth_data": {"x": 1}}
    r = await api.post("/room_keys/version", body, token=tok)
    assert r.status == 200, r.body
    r = await api.get("/room_keys/version", token=tok)
    assert r.body["algorithm"] == "org.example.future" and r.body["auth_data"] == {"x": 1}
    # auth_data is opaque too (Sytest sends a string); only its absence is refused.
    r = await api.post(
        "/room_keys/version", {"algorithm": "m.megolm_backup.v1", "auth_data": "opaque"}, token=tok
    )
    assert r.status == 200, r.body
    r = await api.get(f"/room_keys/version/{r.body['version']}", token=tok)
    assert r.body["auth_data"] == "opaque"
    r = await api.post("/room_keys/version", {"algorithm": "m.megolm_backup.v1"}, token=tok)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    # session_data likewise (Sytest stores strings).
    version = (await api.get("/room_keys/version", token=tok)).body["version"]
    data = {
        "first_message_index": 1,
        "forwarded_count": 0,
        "is_verified": False,
        "session_data": "anopaquestring",
    }
    r = await api.put("/room_keys/keys/!abcd:x/1234", data, token=tok, params={"version": version})
    assert r.status == 200, r.body
    r = await api.get("/room_keys/keys/!abcd:x/1234", token=tok, params={"version": version})
    assert r.body["session_data"] == "anopaquestring"


async def test_backup_keys_and_replacement_rules(api: Api) -> None:
    alice = await api.register("alice")
    tok = alice.access_token
    v1 = (
        await api.post("/room_keys/version", {"algorithm": ALG, "auth_data": {}}, token=tok)
    ).body["version"]
    v2 = (
        await api.post("/room_keys/version", {"algorithm": ALG, "auth_data": {}}, token=tok)
    ).body["version"]
    path = f"/room_keys/keys/{ROOM}/s1"
    r = await api.put(path, key(5, 1, False, "a"), params={"version": v1}, token=tok)
    assert r.status == 403 and r.errcode == "M_WRONG_ROOM_KEYS_VERSION"
    assert r.body["current_version"] == v2
    q = {"version": v2}
    r = await api.put(path, key(5, 1, False, "a"), params=q, token=tok)
    assert r.status == 200 and r.body["count"] == 1
    etag1 = r.body["etag"]

    async def stored() -> dict[str, Any]:
        got = await api.get(path, params=q, token=tok)
        assert got.status == 200
        return dict(got.body)

    # Higher first_message_index loses; equal with higher forwarded_count loses.
    r = await api.put(path, key(6, 0, False, "b"), params=q, token=tok)
    assert r.body["etag"] == etag1 and (await stored())["session_data"]["mac"] == "a"
    r = await api.put(path, key(5, 2, False, "c"), params=q, token=tok)
    assert (await stored())["session_data"]["mac"] == "a"
    # Lower forwarded_count wins; lower index wins; verified beats everything.
    await api.put(path, key(5, 0, False, "d"), params=q, token=tok)
    assert (await stored())["session_data"]["mac"] == "d"
    r = await api.put(path, key(2, 9, False, "e"), params=q, token=tok)
    assert (await stored())["session_data"]["mac"] == "e" and r.body["etag"] != etag1
    await api.put(path, key(9, 9, True, "f"), params=q, token=tok)
    assert (await stored()) == key(9, 9, True, "f")
    await api.put(path, key(0, 0, False, "g"), params=q, token=tok)
    assert (await stored())["session_data"]["mac"] == "f"

    # Whole-backup and per-room forms.
    r = await api.put(
        "/room_keys/keys",
        {
            "rooms": {
                ROOM: {"sessions": {"s2": key(0, 0, False, "h")}},
                "!other:localhost": {"sessions": {"s3": key(0, 0, False, "i")}},
            }
        },
        params=q,
        token=tok,
    )
    assert r.status == 200 and r.body["count"] == 3
    r = await api.get(f"/room_keys/keys/{ROOM}", params=q, token=tok)
    assert set(r.body["sessions"]) == {"s1", "s2"}
    r = await api.get("/room_keys/keys", params=q, token=tok)
    assert set(r.body["rooms"]) == {ROOM, "!other:localhost"}
    r = await api.get("/room_keys/keys/!empty:localhost", params=q, token=tok)
    assert r.body == {"sessions": {}}
    r = await api.get(f"/room_keys/keys/{ROOM}/nope", params=q, token=tok)
    assert r.status == 404 and r.errcode == "M_NOT_FOUND"
    before = (await api.get("/room_keys/version", token=tok)).body
    assert before["count"] == 3
    r = await api.delete(path, params=q, token=tok)
    assert r.status == 200 and r.body["count"] == 2 and r.body["etag"] != before["etag"]
    r = await api.delete(f"/room_keys/keys/{ROOM}", params=q, token=tok)
    assert r.body["count"] == 1
    r = await api.get("/room_keys/keys", params={"version": "999"}, token=tok)
    assert r.status == 404
    r = await api.put(path, {"first_message_index": "x"}, params=q, token=tok)
    assert r.status == 400 and r.errcode == "M_BAD_JSON"
    r = await api.put(path, key(0, 0, False, "z"), token=tok)
    assert r.status == 400 and r.errcode == "M_MISSING_PARAM"
