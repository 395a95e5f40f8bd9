"""A join fetches the resident's signing keys alongside make_join
(``Keyring.prefetch``, started by ``RemoteMembership.join``), not after send_join
when its answer's signatures are checked: one round trip less before the join
returns."""

from __future__ import annotations

from typing import Any

from tests.conftest import ServerFactory
from tests.federation.partial_support import PARTIAL_ON
from tests.federation.rooms_support import name, q, register


async def test_the_residents_keys_are_asked_for_before_send_join(
    make_server: ServerFactory,
) -> None:
    a = await make_server(federated=True, federation=PARTIAL_ON)
    b = await make_server(federated=True, federation=PARTIAL_ON)
    api_a, alice = await register(a, "alice")
    r = await api_a.post("/createRoom", {"preset": "public_chat"}, token=alice.access_token)
    assert r.status == 200, r.body
    room_id = str(r.body["room_id"])

    fed = b.hs.federation
    assert fed is not None
    client = fed.client
    asked: list[str] = []
    get_json, put_json = client.get_json, client.put_json

    async def recording_get(server: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if server == name(a):
            asked.append(path)
        return await get_json(server, path, *args, **kwargs)

    async def recording_put(server: str, path: str, *args: Any, **kwargs: Any) -> Any:
        if server == name(a):
            asked.append(path)
        return await put_json(server, path, *args, **kwargs)

    client.get_json = recording_get  # type: ignore[method-assign,assignment]
    client.put_json = recording_put  # type: ignore[method-assign,assignment]
    api_b, bob = await register(b, "bob")
    r = await api_b.post(f"/join/{q(room_id)}?server_name={q(name(a))}", {}, token=bob.access_token)
    assert r.status == 200, r.body
    keys = [i for i, p in enumerate(asked) if p == "/_matrix/key/v2/server"]
    send_join = [i for i, p in enumerate(asked) if "/send_join/" in p]
    assert keys and send_join, asked
    assert keys[0] < send_join[0], asked
    assert len(keys) == 1, asked  # fetched once: the answer's check finds them at hand
    for api in (api_a, api_b):
        await api.__aexit__(None, None, None)


async def test_a_failed_prefetch_leaves_the_lookup_free_to_ask(
    make_server: ServerFactory,
) -> None:
    """``Keyring.prefetch`` does not take the keyring's rate-limit turn: when it fails
    (the resident's key endpoint down a moment), the lookup that needs the key asks
    again instead of failing for the next 30 s."""
    from federation.errors import FederationError

    a = await make_server(federated=True)
    b = await make_server(federated=True)
    fed = b.hs.federation
    assert fed is not None
    keyring, client = fed.keyring, fed.client
    get_json = client.get_json
    failures = 0

    async def failing_once(server: str, path: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal failures
        if server == name(a) and path == "/_matrix/key/v2/server" and not failures:
            failures += 1
            raise FederationError(server, "down a moment", status=502)
        return await get_json(server, path, *args, **kwargs)

    client.get_json = failing_once  # type: ignore[method-assign,assignment]
    await keyring.prefetch(name(a))
    assert failures == 1
    key = await keyring.get_verify_key(name(a), a.hs.signing_key.key_id, 0)
    assert bytes(key) == bytes(a.hs.signing_key.verify_key)
