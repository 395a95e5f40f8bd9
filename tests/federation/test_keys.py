"""Key server, keyring and notary between two real servers over loopback TLS."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from federation.errors import KeyLookupError
from federation.keyring import Keyring
from homeserver.app import RunningServer
from homeserver.events.keys import (
    SigningKey,
    decode_verify_key_base64,
    generate_signing_key,
    verify_key_base64,
)
from homeserver.events.signing import SignatureError, sign_json, verify_json_signature
from homeserver.tls import server_ssl_context, write_self_signed
from tests.conftest import ServerFactory

WEEK_MS = 7 * 24 * 3600 * 1000


def fed(server: RunningServer) -> Any:
    assert server.hs.federation is not None
    return server.hs.federation


async def fed_get(server: RunningServer, path: str) -> tuple[int, Any]:
    url = f"https://127.0.0.1:{server.federation_port}{path}"
    async with aiohttp.ClientSession() as s, s.get(url, ssl=False) as resp:
        return resp.status, await resp.json()


async def fed_post(server: RunningServer, path: str, body: Any) -> tuple[int, Any]:
    url = f"https://127.0.0.1:{server.federation_port}{path}"
    async with aiohttp.ClientSession() as s, s.post(url, json=body, ssl=False) as resp:
        return resp.status, await resp.json()


def check_self_signed(resp: dict[str, Any], server_name: str) -> None:
    for key_id, entry in resp["verify_keys"].items():
        verify_json_signature(resp, server_name, key_id, decode_verify_key_base64(entry["key"]))


@pytest.fixture
async def pair(make_server: ServerFactory) -> tuple[RunningServer, RunningServer]:
    return await make_server(federated=True), await make_server(federated=True)


async def test_key_server_publishes_signed_keys(pair: tuple[RunningServer, RunningServer]) -> None:
    _, b = pair
    status, body = await fed_get(b, "/_matrix/key/v2/server")
    assert status == 200
    name = b.hs.config.server_name
    key = b.hs.signing_key
    assert body["server_name"] == name
    assert body["verify_keys"] == {key.key_id: {"key": verify_key_base64(key)}}
    assert body["old_verify_keys"] == {}
    now = int(time.time() * 1000)
    assert now + 3600_000 < body["valid_until_ts"] <= now + WEEK_MS
    check_self_signed(body, name)
    tampered = {**body, "valid_until_ts": body["valid_until_ts"] + 1}
    with pytest.raises(SignatureError):
        check_self_signed(tampered, name)


async def test_keyring_fetches_verifies_and_persists(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    b_name, b_key = b.hs.config.server_name, b.hs.signing_key
    keyring = fed(a).keyring
    now = int(time.time() * 1000)
    vk = await keyring.get_verify_key(b_name, b_key.key_id, now)
    assert bytes(vk) == bytes(b_key.verify_key)

    signed = sign_json({"hello": "world"}, b_name, b_key)
    await keyring.verify_json_for_server(b_name, signed, now)
    with pytest.raises(SignatureError):
        await keyring.verify_json_for_server(b_name, {**signed, "hello": "mars"}, now)
    # Not trusted beyond the 7-day cap, whatever the server published.
    with pytest.raises(KeyLookupError):
        await keyring.get_verify_key(b_name, b_key.key_id, now + WEEK_MS + 3600_000)

    row = await a.hs.db.fetchone(
        "SELECT verify_key, valid_until_ts FROM server_keys WHERE server_name = $1 AND key_id = $2",
        b_name,
        b_key.key_id,
    )
    assert row["verify_key"] == verify_key_base64(b_key)
    assert now < row["valid_until_ts"] <= now + WEEK_MS + 60_000

    # A fresh keyring (empty memory) on the same database needs no network: stop B first.
    fresh = Keyring(
        a.hs.config.server_name, a.hs.signing_key, keyring.store, keyring.client, a.hs.clock, []
    )
    await b.stop()
    vk2 = await fresh.get_verify_key(b_name, b_key.key_id, now)
    assert bytes(vk2) == bytes(b_key.verify_key)


async def test_unknown_key_id_refetch_is_rate_limited(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    keyring = fed(a).keyring
    now = int(time.time() * 1000)
    with pytest.raises(KeyLookupError):
        await keyring.get_verify_key(b.hs.config.server_name, "ed25519:nope", now)
    # The failed lookup fetched B's keys once; the real key is now known without a refetch.
    assert await keyring.store.get_key(b.hs.config.server_name, b.hs.signing_key.key_id)
    assert not keyring._may_fetch(b.hs.config.server_name)


async def test_notary_get_and_post_sign_with_both_keys(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    a, b = pair
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    status, body = await fed_get(a, f"/_matrix/key/v2/query/{b_name}")
    assert status == 200
    [item] = body["server_keys"]
    assert item["server_name"] == b_name
    check_self_signed(item, b_name)
    [a_key_id] = item["signatures"][a_name]
    assert a_key_id == a.hs.signing_key.key_id
    verify_json_signature(item, a_name, a_key_id, a.hs.signing_key.verify_key)

    future = int(time.time() * 1000) + 3600_000
    status, body = await fed_post(
        a,
        "/_matrix/key/v2/query",
        {
            "server_keys": {
                b_name: {b.hs.signing_key.key_id: {"minimum_valid_until_ts": future}},
                a_name: {},
                "127.0.0.1:1": {},
            }
        },
    )
    assert status == 200
    by_name = {k["server_name"]: k for k in body["server_keys"]}
    assert set(by_name) == {a_name, b_name}  # the unreachable server is left out
    verify_json_signature(
        by_name[b_name], a_name, a.hs.signing_key.key_id, a.hs.signing_key.verify_key
    )
    check_self_signed(by_name[b_name], b_name)
    check_self_signed(by_name[a_name], a_name)

    status, body = await fed_post(a, "/_matrix/key/v2/query", {"server_keys": {}})
    assert (status, body) == (200, {"server_keys": []})
    status, body = await fed_post(a, "/_matrix/key/v2/query", {"server_keys": []})
    assert status == 400 and body["errcode"] == "M_BAD_JSON"
    status, body = await fed_get(a, "/_matrix/key/v2/query/not a name")
    assert status == 400 and body["errcode"] == "M_INVALID_PARAM"


async def test_keys_via_trusted_notary_when_origin_is_down(make_server: ServerFactory) -> None:
    notary = await make_server(federated=True)
    origin = await make_server(federated=True)
    n_name, o_name = notary.hs.config.server_name, origin.hs.config.server_name
    client = await make_server(federated=True, federation={"trusted_key_servers": [n_name]})
    now = int(time.time() * 1000)
    # The notary learns the origin's keys, then the origin goes away.
    await fed(notary).keyring.get_verify_key(o_name, origin.hs.signing_key.key_id, now)
    await origin.stop()
    vk = await fed(client).keyring.get_verify_key(o_name, origin.hs.signing_key.key_id, now)
    assert bytes(vk) == bytes(origin.hs.signing_key.verify_key)


def _pdu(sender: str, ts: int, content: dict[str, Any] | None = None) -> dict[str, Any]:
    from homeserver.events.signing import add_content_hash

    pdu = {
        "type": "m.room.member",
        "room_id": "!abc:example",
        "sender": sender,
        "state_key": sender,
        "content": content or {"membership": "join"},
        "origin_server_ts": ts,
        "depth": 3,
        "prev_events": ["$prev"],
        "auth_events": ["$auth"],
    }
    return add_content_hash(pdu)


async def test_event_signatures(pair: tuple[RunningServer, RunningServer]) -> None:
    from homeserver.events.room_versions import V12
    from homeserver.events.signing import sign_event

    a, b = pair
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    keyring = fed(a).keyring
    now = int(time.time() * 1000)
    pdu = sign_event(_pdu(f"@bob:{b_name}", now), b_name, b.hs.signing_key, V12)
    assert await keyring.verify_event_signatures(pdu, V12) == {b_name}
    # Signed by the wrong server, tampered, or later than the key's validity: rejected.
    by_a = sign_event(_pdu(f"@bob:{b_name}", now), a_name, a.hs.signing_key, V12)
    with pytest.raises(SignatureError):
        await keyring.verify_event_signatures(by_a, V12)
    tampered = {**pdu, "content": {"membership": "leave"}}  # in the redacted form: covered
    with pytest.raises(SignatureError):
        await keyring.verify_event_signatures(tampered, V12)
    late = sign_event(
        _pdu(f"@bob:{b_name}", now + 30 * 24 * 3600_000), b_name, b.hs.signing_key, V12
    )
    with pytest.raises(KeyLookupError):
        await keyring.verify_event_signatures(late, V12)
    # A restricted join: the authorising user's server is checked and reported when it signed.
    content = {"membership": "join", "join_authorised_via_users_server": f"@admin:{a_name}"}
    join = sign_event(_pdu(f"@bob:{b_name}", now, content), b_name, b.hs.signing_key, V12)
    assert await keyring.verify_event_signatures(join, V12) == {b_name}
    join = sign_event(join, a_name, a.hs.signing_key, V12)
    assert await keyring.verify_event_signatures(join, V12) == {a_name, b_name}


async def test_keyed_paths_answer_with_every_key(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """The deprecated keyed paths: the key id is ignored and every key is returned."""
    a, b = pair
    b_name, b_key = b.hs.config.server_name, b.hs.signing_key
    for key_id in (b_key.key_id, "ed25519:other"):
        status, body = await fed_get(b, f"/_matrix/key/v2/server/{key_id}")
        assert status == 200
        assert body["server_name"] == b_name
        assert body["verify_keys"] == {b_key.key_id: {"key": verify_key_base64(b_key)}}
        check_self_signed(body, b_name)

    status, body = await fed_get(a, f"/_matrix/key/v2/query/{b_name}/{b_key.key_id}")
    assert status == 200
    [item] = body["server_keys"]
    assert item["server_name"] == b_name
    check_self_signed(item, b_name)
    verify_json_signature(
        item, a.hs.config.server_name, a.hs.signing_key.key_id, a.hs.signing_key.verify_key
    )
    status, body = await fed_get(a, f"/_matrix/key/v2/query/not a server/{b_key.key_id}")
    assert status == 400
    assert body["errcode"] == "M_INVALID_PARAM"


class ScriptedOrigin:
    """A real TLS HTTP server on loopback that answers ``/_matrix/key/v2/server`` with
    whatever response the test sets (as Sytest's fake servers do): an origin that rotates
    keys, drops them or fails, which a Myelin server would never do on request."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.answer: tuple[int, Any] = (404, {})
        self.hits = 0
        self.name = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/_matrix/key/v2/server", self._serve)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        write_self_signed("127.0.0.1", self.tmp / "o.crt", self.tmp / "o.key")
        ctx = server_ssl_context(str(self.tmp / "o.crt"), str(self.tmp / "o.key"))
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.name = f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        self.hits += 1
        status, body = self.answer
        return web.json_response(body, status=status)

    def signed(self, key: SigningKey, valid_until_ts: int) -> dict[str, Any]:
        body = {
            "server_name": self.name,
            "verify_keys": {key.key_id: {"key": verify_key_base64(key)}},
            "old_verify_keys": {},
            "valid_until_ts": valid_until_ts,
        }
        return sign_json(body, self.name, key)


async def notary_query(
    notary: RunningServer, origin: str, key_id: str, min_valid: int | None = None
) -> list[dict[str, Any]]:
    crit = {} if min_valid is None else {"minimum_valid_until_ts": min_valid}
    status, body = await fed_post(
        notary, "/_matrix/key/v2/query", {"server_keys": {origin: {key_id: crit}}}
    )
    assert status == 200, body
    items: list[dict[str, Any]] = body["server_keys"]
    return items


async def test_notary_refetches_keeps_expired_and_dropped_keys(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """Sytest 50federation/01keys: an expired key is still returned when nothing better
    exists, a later min_valid_until_ts forces a refetch, and a response that drops a key
    does not make the notary forget it."""
    notary = await make_server(federated=True)
    origin = ScriptedOrigin(tmp_path)
    await origin.start()
    try:
        day_ago = int(time.time() * 1000) - 24 * 3600 * 1000
        key1 = generate_signing_key("key_1")
        origin.answer = (200, origin.signed(key1, day_ago))
        [item] = await notary_query(notary, origin.name, key1.key_id)
        assert item["valid_until_ts"] == day_ago and key1.key_id in item["verify_keys"]
        assert origin.hits == 1

        # Wanting validity beyond what is kept: asked again; same answer, same result.
        [item] = await notary_query(notary, origin.name, key1.key_id, day_ago + 1000)
        assert origin.hits == 2 and item["valid_until_ts"] == day_ago

        # The origin now publishes only key_2: key_1 is still vouched for.
        key2 = generate_signing_key("key_2")
        origin.answer = (200, origin.signed(key2, day_ago + 1000))
        await notary_query(notary, origin.name, key1.key_id, int(time.time() * 1000))
        assert origin.hits == 3
        # A minimum the kept response meets: answered from it, the origin not asked
        # (however far past its lifetime; the querier said what it needs).
        [item] = await notary_query(notary, origin.name, key1.key_id, day_ago)
        assert list(item["verify_keys"]) == [key1.key_id]
        assert origin.hits == 3
        [item] = await notary_query(notary, origin.name, key2.key_id, day_ago)
        assert list(item["verify_keys"]) == [key2.key_id]

        # The origin fails: the kept response is returned, and the origin is not
        # asked again at once.
        # (Expired responses are past half their lifetime, so each query above asked.)
        origin.answer = (400, {})
        hits = origin.hits
        [item] = await notary_query(notary, origin.name, key1.key_id, int(time.time() * 1000))
        assert origin.hits == hits + 1 and list(item["verify_keys"]) == [key1.key_id]
        await notary_query(notary, origin.name, key1.key_id, int(time.time() * 1000))
        assert origin.hits == hits + 1
        # ...unless the notary holds nothing for the key asked: then the origin is
        # asked even so (Sytest runs its notary tests back to back against one origin).
        key3 = generate_signing_key("key_3")
        origin.answer = (200, origin.signed(key3, day_ago))
        [item] = await notary_query(notary, origin.name, key3.key_id)
        assert origin.hits == hits + 2 and list(item["verify_keys"]) == [key3.key_id]
    finally:
        await origin.stop()


async def test_key_validity_from_v5_and_event_id_server_in_v1(
    pair: tuple[RunningServer, RunningServer],
) -> None:
    """v5-signing-requirements: before v5 a key verifies events whatever their
    origin_server_ts; v1-v2: the server named in the event id must sign too."""
    from homeserver.events.room_versions import V1, V2, V4, V5, V10
    from homeserver.events.signing import sign_event

    a, b = pair
    a_name, b_name = a.hs.config.server_name, b.hs.config.server_name
    keyring = fed(a).keyring
    late_ts = int(time.time() * 1000) + 30 * 24 * 3600_000
    for rv in (V4, V5, V10):
        late = sign_event(_pdu(f"@bob:{b_name}", late_ts), b_name, b.hs.signing_key, rv)
        if rv.enforce_key_validity:
            with pytest.raises(KeyLookupError):
                await keyring.verify_event_signatures(late, rv)
        else:
            assert await keyring.verify_event_signatures(late, rv) == {b_name}

    now = int(time.time() * 1000)
    for rv in (V1, V2):
        own = {**_pdu(f"@bob:{b_name}", now), "event_id": f"$ev:{b_name}"}
        signed = sign_event(own, b_name, b.hs.signing_key, rv)
        assert await keyring.verify_event_signatures(signed, rv) == {b_name}
        # An id naming A needs A's signature as well.
        foreign = {**_pdu(f"@bob:{b_name}", now), "event_id": f"$ev:{a_name}"}
        only_b = sign_event(foreign, b_name, b.hs.signing_key, rv)
        with pytest.raises(SignatureError):
            await keyring.verify_event_signatures(only_b, rv)
        both = sign_event(only_b, a_name, a.hs.signing_key, rv)
        assert await keyring.verify_event_signatures(both, rv) == {a_name, b_name}
