"""URL previews: off by default; when on, refused for loopback, private and link-local
targets (IP literals, names that resolve to them, and redirects to them); with a test-only
allow of 127.0.0.1 a local page is previewed, its image stored as media."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from homeserver.tls import server_ssl_context, write_self_signed
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.media_support import AUTHED, png

PAGE = b"""<html><head><title>Fallback title</title>
<meta property="og:title" content="A local page">
<meta property="og:description" content="Described &amp; previewed">
<meta property="og:image" content="/pic.png">
</head><body>hello</body></html>"""


@pytest.fixture
async def site() -> AsyncIterator[str]:
    """A real HTTP server on 127.0.0.1 with a page, its image and a redirect to ::1."""
    image = png(120, 80)

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def pic(_: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/png")

    async def to_v6(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"http://[::1]:{request.url.port}/page")

    app = web.Application()
    app.add_routes([web.get("/page", page), web.get("/pic.png", pic), web.get("/hop", to_v6)])
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def preview(api: Api, token: str, url: str) -> tuple[int, dict[str, object]]:
    r = await api.get(f"{AUTHED}/preview_url", token=token, params={"url": url})
    return r.status, r.body


async def test_preview_is_off_by_default(api: Api, site: str) -> None:
    alice = await api.register("alice")
    r = await api.get(f"{AUTHED}/preview_url", token=alice.access_token, params={"url": site})
    assert (r.status, r.errcode) == (404, "M_UNRECOGNIZED")


async def test_preview_refuses_local_addresses(make_server: ServerFactory, site: str) -> None:
    server = await make_server(media={"url_preview_enabled": True})
    port = site.rsplit(":", 1)[1]
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        for url in (
            f"{site}/page",
            f"http://localhost:{port}/page",  # a name that resolves to loopback
            f"http://[::1]:{port}/page",
            f"http://[::ffff:127.0.0.1]:{port}/page",
            "http://10.0.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0.0.0.0/",
        ):
            status, body = await preview(api, alice.access_token, url)
            assert (status, body.get("errcode")) == (403, "M_FORBIDDEN"), url
        status, body = await preview(api, alice.access_token, "file:///etc/passwd")
        assert (status, body.get("errcode")) == (400, "M_INVALID_PARAM")
        r = await api.get(f"{AUTHED}/preview_url", token=alice.access_token)
        assert (r.status, r.errcode) == (400, "M_MISSING_PARAM")
        r = await api.get(f"{AUTHED}/preview_url", params={"url": site})
        assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")


async def test_preview_of_an_allowed_local_page(make_server: ServerFactory, site: str) -> None:
    server = await make_server(
        media={"url_preview_enabled": True, "url_preview_ip_allow": ["127.0.0.1/32"]}
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        status, body = await preview(api, alice.access_token, f"{site}/page")
        assert status == 200, body
        assert body["og:title"] == "A local page"
        assert body["og:description"] == "Described & previewed"
        assert body["og:image:type"] == "image/png"
        assert (body["og:image:width"], body["og:image:height"]) == (120, 80)
        mxc = body["og:image"]
        assert isinstance(mxc, str) and mxc.startswith("mxc://")
        r = await api.get(f"{AUTHED}/download/{mxc[len('mxc://') :]}", token=alice.access_token)
        assert r.status == 200 and r.body == png(120, 80)
        # Each redirect hop is checked again: ::1 is not allowed.
        status, body = await preview(api, alice.access_token, f"{site}/hop")
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN")
    denied = await make_server(
        media={
            "url_preview_enabled": True,
            "url_preview_ip_allow": ["127.0.0.0/8"],
            "url_preview_ip_deny": ["127.0.0.1/32"],
        }
    )
    async with Api(denied.client_url) as api:
        alice = await api.register("alice")
        status, body = await preview(api, alice.access_token, f"{site}/page")
        assert (status, body.get("errcode")) == (403, "M_FORBIDDEN")


async def test_https_preview_trusts_the_configured_ca(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    """An https page whose certificate only url_preview_ca_file vouches for (an intranet's
    own CA; Sytest's test server) is previewed, on the legacy /media/v3 path too; without
    the file it cannot be fetched."""
    cert, key = tmp_path / "site.crt", tmp_path / "site.key"
    write_self_signed("127.0.0.1", cert, key)
    image = png(64, 32)

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=PAGE, content_type="text/html")

    async def pic(_: web.Request) -> web.Response:
        return web.Response(body=image, content_type="image/png")

    app = web.Application()
    app.add_routes([web.get("/page", page), web.get("/pic.png", pic)])
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ssl_context(str(cert), str(key)))
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}/page"
    try:
        allow = {"url_preview_enabled": True, "url_preview_ip_allow": ["127.0.0.1/32"]}
        trusting = await make_server(media={**allow, "url_preview_ca_file": str(cert)})
        async with Api(trusting.client_url) as api:
            alice = await api.register("alice")
            r = await api.get(
                "/_matrix/media/v3/preview_url",
                token=alice.access_token,
                params={"url": url},
            )
            assert r.status == 200, r.body
            assert r.body["og:title"] == "A local page"
            assert r.body["matrix:image:size"] == len(image)
            assert (r.body["og:image:width"], r.body["og:image:height"]) == (64, 32)
        plain = await make_server(media=allow)
        async with Api(plain.client_url) as api:
            bob = await api.register("bob")
            status, body = await preview(api, bob.access_token, url)
            assert status == 502, body
    finally:
        await runner.cleanup()
