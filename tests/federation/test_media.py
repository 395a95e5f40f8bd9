"""Media across two Myelin servers over loopback TLS: a user on one server downloads (and
thumbnails) media uploaded on the other, fetched over the authenticated federation endpoint,
then served from the cache with the origin stopped; the remote cache's size bound, purging
it by age, and the federation endpoint's own refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from federation.errors import FederationError
from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.federation.fedutil import FAST_RETRY, federated, name
from tests.helpers import Api
from tests.integration.admin_support import make_admin
from tests.integration.media_support import download, image_size, png, thumbnail, upload_ok


def cached_files(server: RunningServer) -> list[Path]:
    root = Path(server.hs.config.media.store_path) / "content"
    return [p for p in root.rglob("*") if p.is_file()]


async def test_remote_media_is_fetched_then_served_from_cache(make_server: ServerFactory) -> None:
    origin = await federated(make_server)
    local = await federated(make_server)
    async with Api(origin.client_url) as oapi, Api(local.client_url) as lapi:
        alice = await oapi.register("alice")
        bob = await lapi.register("bob")
        blob = bytes(range(256)) * 4096  # 1 MiB, every byte value
        s, m = await upload_ok(oapi, alice, blob, "application/pdf", "report.pdf")
        image = png(800, 400)
        si, mi = await upload_ok(oapi, alice, image, "image/png", "pic.png")
        assert s == si == name(origin)

        r = await download(lapi, bob, s, m)
        assert r.status == 200 and r.body == blob
        assert r.headers["Content-Type"] == "application/pdf"
        assert r.headers["Content-Disposition"] == "attachment; filename=report.pdf"
        r = await thumbnail(lapi, bob, si, mi, width="96", height="96", method="crop")
        assert r.status == 200 and image_size(r.body) == (96, 96)

        await origin.stop()
        r = await download(lapi, bob, s, m)
        assert r.status == 200 and r.body == blob
        r = await download(lapi, bob, si, mi)
        assert r.status == 200 and r.body == image
        r = await thumbnail(lapi, bob, si, mi, width="320", height="240", method="scale")
        assert r.status == 200 and image_size(r.body) == (320, 160)
        # Never fetched before and the origin is down: a Matrix error, not a hang or a 500.
        r = await download(lapi, bob, s, "neverUploaded")
        assert (r.status, r.errcode) == (502, "M_UNKNOWN")


async def test_missing_and_refused_remote_media(make_server: ServerFactory) -> None:
    origin = await federated(make_server)
    local = await federated(make_server)
    async with Api(origin.client_url) as oapi, Api(local.client_url) as lapi:
        alice = await oapi.register("alice")
        bob = await lapi.register("bob")
        r = await download(lapi, bob, name(origin), "noSuchMedia")
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        # The origin quarantined it: not served to other servers either.
        s, m = await upload_ok(oapi, alice, b"nope", "text/plain")
        await origin.hs.media.quarantine(s, m)
        r = await download(lapi, bob, s, m)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        # Quarantined here before it was ever fetched: never fetched, never served.
        s3, m3 = await upload_ok(oapi, alice, b"blocked here", "text/plain")
        assert await local.hs.media.quarantine(s3, m3)
        r = await download(lapi, bob, s3, m3)
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        # A media server never proxies a third server's media onward.
        s2, m2 = await upload_ok(lapi, bob, b"local to B", "text/plain")
        r = await download(oapi, alice, s2, m2)
        assert r.status == 200
        assert origin.hs.federation is not None
        client = origin.hs.federation.client
        with pytest.raises(FederationError) as err:
            async with client.stream(name(local), f"/_matrix/federation/v1/media/download/{m}"):
                pass
        assert (err.value.status, err.value.errcode) == (404, "M_NOT_FOUND")
        # Without X-Matrix authentication: refused.
        assert lapi.session is not None
        fed_url = f"https://127.0.0.1:{local.federation_port}/_matrix/federation/v1/media"
        async with lapi.session.get(f"{fed_url}/download/{m2}", ssl=False) as resp:
            assert resp.status == 401
            assert (await resp.json())["errcode"] == "M_UNAUTHORIZED"


async def test_remote_cache_bound_and_purge(make_server: ServerFactory) -> None:
    origin = await federated(make_server)
    local = await make_server(
        federated=True, media={"remote_cache_max_bytes": 250_000}, **FAST_RETRY
    )
    async with Api(origin.client_url) as oapi, Api(local.client_url) as lapi:
        alice = await oapi.register("alice")
        bob = await lapi.register("bob")
        ids = [
            await upload_ok(oapi, alice, bytes([i]) * 100_000, "application/octet-stream")
            for i in range(4)
        ]
        for s, m in ids:
            assert (await download(lapi, bob, s, m)).status == 200
        assert sum(p.stat().st_size for p in cached_files(local)) <= 250_000
        assert len(cached_files(local)) == 2
        # Through the admin API (admins only), as an operator would.
        root = await make_admin(local, lapi)
        purge = "/_synapse/admin/v1/purge_media_cache"
        before_ts = local.hs.clock.now_ms() + 1
        r = await lapi.post(f"{purge}?before_ts={before_ts}", {}, token=bob.access_token)
        assert r.status == 403 and r.body["errcode"] == "M_FORBIDDEN"
        assert len(cached_files(local)) == 2
        r = await lapi.post(f"{purge}?before_ts={before_ts}", {}, token=root.access_token)
        assert r.status == 200 and r.body == {"deleted": 2}
        assert cached_files(local) == []
        # Purged media is fetched again on the next request.
        s, m = ids[0]
        r = await download(lapi, bob, s, m)
        assert r.status == 200 and r.body == bytes([0]) * 100_000
