"""Server discovery: the pure rules, and /.well-known over a real local HTTPS server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from federation.auth import parse_authorization
from federation.client import FederationClient, is_forbidden_address
from federation.discovery import (
    Target,
    order_srv,
    parse_well_known,
    split_server_name,
    well_known_cache_ms,
)
from homeserver.app import RunningServer
from homeserver.clock import Clock
from homeserver.events.keys import generate_signing_key
from homeserver.tls import server_ssl_context, write_self_signed
from tests.conftest import ServerFactory, free_port
from tests.helpers import Api

HOUR_MS = 3600 * 1000


# --- pure rules ---------------------------------------------------------------------------


def test_split_server_name() -> None:
    assert split_server_name("example.org") == ("example.org", None)
    assert split_server_name("example.org:8449") == ("example.org", 8449)
    assert split_server_name("1.2.3.4:99") == ("1.2.3.4", 99)
    assert split_server_name("[::1]") == ("::1", None)
    assert split_server_name("[2001:db8::1]:443") == ("2001:db8::1", 443)
    for bad in ("", "exa mple.org", "example.org:", "example.org:99999", "[::1", "a:b:c"):
        with pytest.raises(ValueError):
            split_server_name(bad)


def test_parse_well_known() -> None:
    assert parse_well_known(b'{"m.server": "fed.example.org:443"}') == "fed.example.org:443"
    assert parse_well_known(b'{"m.server": "[::1]:8448", "x": 1}') == "[::1]:8448"
    for bad in (
        b"",
        b"not json",
        b"[]",
        b"{}",
        b'{"m.server": 5}',
        b'{"m.server": "a b"}',
        b'{"m.server": "host:0x10"}',
        b"\xff\xfe",
    ):
        assert parse_well_known(bad) is None, bad


def test_well_known_cache_period() -> None:
    assert well_known_cache_ms(None) == 24 * HOUR_MS
    assert well_known_cache_ms("public, max-age=600") == 600_000
    assert well_known_cache_ms("max-age=9999999") == 48 * HOUR_MS
    assert well_known_cache_ms("no-store") == 0
    assert well_known_cache_ms("private") == 24 * HOUR_MS


def test_srv_order() -> None:
    records = [(20, 0, "c.example.", 3), (10, 5, "a.example.", 1), (10, 0, "b.example.", 2)]
    ordered = order_srv(records)
    assert ordered[2] == ("c.example", 3)
    assert {ordered[0], ordered[1]} == {("a.example", 1), ("b.example", 2)}
    assert order_srv([(0, 0, ".", 0)]) == []


def test_forbidden_addresses() -> None:
    for addr in (
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "172.16.0.1",
        "169.254.1.1",
        "0.0.0.0",  # noqa: S104
        "224.0.0.1",
        "100.64.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "nonsense",
    ):
        assert is_forbidden_address(addr), addr
    for addr in ("1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"):
        assert not is_forbidden_address(addr), addr


def test_parse_authorization_header() -> None:
    auth = parse_authorization(
        'X-Matrix origin="a.example:8448",destination="b.example",key="ed25519:k1",sig="c2ln"'
    )
    assert (auth.origin, auth.destination, auth.key, auth.sig) == (
        "a.example:8448",
        "b.example",
        "ed25519:k1",
        "c2ln",
    )
    auth = parse_authorization(r'x-matrix  Key = "ed25519:k\1" ,ORIGIN=a.example,sig=abc,extra=1')
    assert (auth.origin, auth.destination, auth.key, auth.sig) == (
        "a.example",
        None,
        "ed25519:k1",
        "abc",
    )
    assert parse_authorization("X-Matrix origin=a.example,key=ed25519:k,sig=ab/c+d").sig == "ab/c+d"
    for bad in (
        "Bearer x",
        "X-Matrix",
        'X-Matrix origin="a.example"',
        "X-Matrix origin=a b,key=k,sig=s",
        'X-Matrix origin="bad name",key=k,sig=s',
        'X-Matrix origin="a.example,key=k,sig=s',
    ):
        with pytest.raises(ValueError):
            parse_authorization(bad)


# --- resolution against a real HTTPS /.well-known server ------------------------------------


class WellKnownServer:
    def __init__(self) -> None:
        self.hits = 0
        self.answer: tuple[int, str, dict[str, str]] = (404, "", {})

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        status, body, headers = self.answer
        return web.Response(status=status, text=body, headers=headers)

    async def moved(self, request: web.Request) -> web.Response:
        return web.json_response({"m.server": "moved.example:99"})


@pytest.fixture
async def well_known(tmp_path: Path) -> AsyncIterator[tuple[WellKnownServer, int]]:
    write_self_signed("localhost", tmp_path / "c.crt", tmp_path / "c.key")
    server = WellKnownServer()
    app = web.Application()
    app.router.add_get("/.well-known/matrix/server", server.handle)
    app.router.add_get("/moved", server.moved)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    ssl_ctx = server_ssl_context(str(tmp_path / "c.crt"), str(tmp_path / "c.key"))
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=ssl_ctx).start()
    yield server, port
    await runner.cleanup()


SRV: dict[str, list[tuple[str, int]]] = {}


async def srv_lookup(name: str) -> list[tuple[str, int]]:
    return SRV.get(name, [])


@pytest.fixture
async def client(well_known: tuple[WellKnownServer, int]) -> AsyncIterator[FederationClient]:
    SRV.clear()
    c = FederationClient(
        "me.example",
        generate_signing_key("k"),
        Clock(),
        insecure_local=True,
        srv_lookup=srv_lookup,
        well_known_port=well_known[1],
    )
    yield c
    await c.close()


async def test_ip_literals_and_explicit_ports_skip_well_known(
    client: FederationClient, well_known: tuple[WellKnownServer, int]
) -> None:
    r = client.resolver
    assert await r.resolve("1.2.3.4") == Target("1.2.3.4", 8448, "1.2.3.4", None)
    assert await r.resolve("[::1]:80") == Target("::1", 80, "[::1]:80", None)
    assert await r.resolve("localhost:8449") == Target(
        "localhost", 8449, "localhost:8449", "localhost"
    )
    assert well_known[0].hits == 0


async def test_well_known_delegation_and_cache(
    client: FederationClient, well_known: tuple[WellKnownServer, int]
) -> None:
    server, _ = well_known
    r = client.resolver
    server.answer = (200, '{"m.server": "fed.example:1234"}', {"Cache-Control": "max-age=3600"})
    assert await r.resolve("localhost") == Target(
        "fed.example", 1234, "fed.example:1234", "fed.example"
    )
    server.answer = (200, '{"m.server": "other.example"}', {})
    assert await r.resolve("localhost") == Target(
        "fed.example", 1234, "fed.example:1234", "fed.example"
    )
    assert server.hits == 1  # cached
    r._cache.clear()
    SRV["_matrix-fed._tcp.other.example"] = [("srv-target.example", 4443)]
    assert await r.resolve("localhost") == Target(
        "srv-target.example", 4443, "other.example", "other.example"
    )
    r._cache.clear()
    SRV.clear()
    SRV["_matrix._tcp.other.example"] = [("legacy.example", 5000)]
    assert (await r.resolve("localhost")).connect_host == "legacy.example"
    r._cache.clear()
    SRV.clear()
    assert await r.resolve("localhost") == Target(
        "other.example", 8448, "other.example", "other.example"
    )
    r._cache.clear()
    server.answer = (200, '{"m.server": "10.0.0.1"}', {})
    assert await r.resolve("localhost") == Target("10.0.0.1", 8448, "10.0.0.1", None)


async def test_well_known_errors_fall_back_to_srv_then_8448(
    client: FederationClient, well_known: tuple[WellKnownServer, int]
) -> None:
    server, _ = well_known
    r = client.resolver
    for answer in ((404, "", {}), (200, "not json", {}), (200, '{"m.server": 1}', {})):
        r._cache.clear()
        server.answer = answer
        assert await r.resolve("localhost") == Target("localhost", 8448, "localhost", "localhost")
    hits = server.hits
    assert await r.resolve("localhost") == Target("localhost", 8448, "localhost", "localhost")
    assert server.hits == hits  # errors are cached too
    r._cache.clear()
    SRV["_matrix-fed._tcp.localhost"] = [("srv.example", 7000)]
    assert await r.resolve("localhost") == Target("srv.example", 7000, "localhost", "localhost")


async def test_well_known_follows_redirects_but_not_loops(
    client: FederationClient, well_known: tuple[WellKnownServer, int]
) -> None:
    server, _ = well_known
    r = client.resolver
    server.answer = (302, "", {"Location": "/moved"})
    assert await r.resolve("localhost") == Target(
        "moved.example", 99, "moved.example:99", "moved.example"
    )
    r._cache.clear()
    hits = server.hits
    server.answer = (307, "", {"Location": "/.well-known/matrix/server"})  # a loop
    assert await r.resolve("localhost") == Target("localhost", 8448, "localhost", "localhost")
    assert server.hits - hits == 6  # the first request and five redirects, then it gives up


async def test_strict_client_refuses_local_well_known(
    well_known: tuple[WellKnownServer, int],
) -> None:
    server, port = well_known
    server.answer = (200, '{"m.server": "fed.example:1"}', {})
    strict = FederationClient(
        "me.example",
        generate_signing_key("k"),
        Clock(),
        srv_lookup=srv_lookup,
        well_known_port=port,
    )
    try:
        # localhost resolves to loopback: the fetch is refused before connecting.
        assert await strict.resolver.resolve("localhost") == Target(
            "localhost", 8448, "localhost", "localhost"
        )
        assert server.hits == 0
    finally:
        await strict.close()


async def test_client_listener_serves_delegation(make_server: ServerFactory) -> None:
    server: RunningServer = await make_server(federation={"well_known_server": "fed.example:443"})
    async with Api(server.client_url) as api:
        reply = await api.get("/.well-known/matrix/server")
    assert reply.status == 200
    assert reply.body == {"m.server": "fed.example:443"}
    plain: RunningServer = await make_server()
    async with Api(plain.client_url) as api:
        assert (await api.get("/.well-known/matrix/server")).status == 404
