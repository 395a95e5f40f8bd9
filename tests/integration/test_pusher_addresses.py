"""Pusher gateway URLs come from users: without the insecure-local policy, addresses on
this host or on private, link-local or multicast networks are refused at /pushers/set."""

from __future__ import annotations

import pytest

from tests.conftest import ServerFactory
from tests.helpers import Api

REFUSED = [
    "http://127.0.0.1:9/_matrix/push/v1/notify",
    "http://localhost:9/_matrix/push/v1/notify",
    "http://[::1]:9/_matrix/push/v1/notify",
    "http://10.1.2.3/_matrix/push/v1/notify",
    "http://192.168.0.10/_matrix/push/v1/notify",
    "http://169.254.169.254/_matrix/push/v1/notify",
    "http://224.0.0.1/_matrix/push/v1/notify",
    "http://[fe80::1]/_matrix/push/v1/notify",
    "http://0.0.0.0/_matrix/push/v1/notify",
]


def pusher(url: str) -> dict[str, object]:
    return {
        "kind": "http",
        "app_id": "org.example.app",
        "pushkey": "key-1",
        "app_display_name": "App",
        "device_display_name": "Phone",
        "lang": "en",
        "data": {"url": url},
    }


@pytest.mark.parametrize("url", REFUSED)
async def test_local_gateways_are_refused(make_server: ServerFactory, url: str) -> None:
    server = await make_server(federation={"insecure_local": False})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        r = await api.post("/pushers/set", pusher(url), token=alice.access_token)
        assert (r.status, r.errcode) == (400, "M_INVALID_PARAM"), r.body
        r = await api.get("/pushers", token=alice.access_token)
        assert r.body["pushers"] == []


async def test_public_names_and_the_insecure_local_policy(make_server: ServerFactory) -> None:
    strict = await make_server(federation={"insecure_local": False})
    async with Api(strict.client_url) as api:
        alice = await api.register("alice")
        # A name that does not resolve now is checked again at delivery; it is kept.
        url = "https://push.example.invalid/_matrix/push/v1/notify"
        r = await api.post("/pushers/set", pusher(url), token=alice.access_token)
        assert r.status == 200, r.body
        r = await api.get("/pushers", token=alice.access_token)
        assert [p["data"]["url"] for p in r.body["pushers"]] == [url]
    # The operator's insecure-local policy (tests, local set-ups) lets loopback through.
    lax = await make_server()
    async with Api(lax.client_url) as api:
        bob = await api.register("bob")
        r = await api.post("/pushers/set", pusher(REFUSED[0]), token=bob.access_token)
        assert r.status == 200, r.body
