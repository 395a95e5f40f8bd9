"""The content repository through the real client API: uploads, authenticated downloads,
safe-serving headers, thumbnails, limits, quota, the asynchronous upload pair, bad ids and
the legacy endpoints' freeze (spec: client-server "Content repository")."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

from PIL import Image

from homeserver.app import RunningServer
from tests.conftest import ServerFactory
from tests.helpers import Api
from tests.integration.media_support import (
    AUTHED,
    download,
    gif_animated,
    image_size,
    png,
    thumbnail,
    upload,
    upload_ok,
)

SAFE_HEADERS = ("Content-Security-Policy", "X-Content-Type-Options", "Cross-Origin-Resource-Policy")


def content_files(server: RunningServer) -> list[Path]:
    root = Path(server.hs.config.media.store_path) / "content"
    return [p for p in root.rglob("*") if p.is_file()]


async def test_text_round_trip_with_safe_headers(api: Api) -> None:
    alice = await api.register("alice")
    server_name, media_id = await upload_ok(api, alice, b"hello media", "text/plain", "hi.txt")
    r = await download(api, alice, server_name, media_id)
    assert r.status == 200
    assert r.body == b"hello media"
    assert r.headers["Content-Type"].startswith("text/plain")
    assert r.headers["Content-Disposition"] == "inline; filename=hi.txt"
    assert r.headers["Content-Security-Policy"].startswith("sandbox; default-src 'none'")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    # The file name in the URL replaces the uploaded one.
    r = await api.get(
        f"{AUTHED}/download/{server_name}/{media_id}/other.txt", token=alice.access_token
    )
    assert r.status == 200 and r.headers["Content-Disposition"] == "inline; filename=other.txt"
    # Downloads need an access token.
    r = await download(api, None, server_name, media_id)
    assert (r.status, r.errcode) == (401, "M_MISSING_TOKEN")
    r = await api.get(f"{AUTHED}/config", token=alice.access_token)
    assert r.status == 200 and r.body["m.upload.size"] == 50 * 1024 * 1024


async def test_html_is_served_sandboxed_as_attachment(api: Api) -> None:
    alice = await api.register("alice")
    page = b"<html><script>alert(1)</script></html>"
    server_name, media_id = await upload_ok(api, alice, page, "text/html", "page.html")
    r = await download(api, alice, server_name, media_id)
    assert r.status == 200 and r.body == page
    assert r.headers["Content-Type"].startswith("text/html")
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert "sandbox" in r.headers["Content-Security-Policy"]
    assert "script-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    # A malformed Content-Type is not echoed, and none at all is not guessed from the bytes.
    for bad in ("text/html <x>", "html", "text/html; charset"):
        server_name, media_id = await upload_ok(api, alice, page, bad)
        r = await download(api, alice, server_name, media_id)
        assert r.headers["Content-Type"] == "application/octet-stream"
        assert r.headers["Content-Disposition"] == "attachment"


async def test_png_and_identical_uploads_share_one_file(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    image = png(64, 48)
    s1, m1 = await upload_ok(api, alice, image, "image/png", "a.png")
    s2, m2 = await upload_ok(api, alice, image, "image/png", "b.png")
    assert m1 != m2
    for s, m in ((s1, m1), (s2, m2)):
        r = await download(api, alice, s, m)
        assert r.status == 200 and r.body == image
        assert r.headers["Content-Type"] == "image/png"
    assert [p.read_bytes() for p in content_files(server)] == [image]


async def test_thumbnails_scale_crop_and_small_originals(api: Api) -> None:
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, png(1000, 500), "image/png")
    r = await thumbnail(api, alice, s, m, width="32", height="32", method="crop")
    assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    assert image_size(r.body) == (32, 32)
    r = await thumbnail(api, alice, s, m, width="300", height="200", method="scale")
    assert r.status == 200
    assert image_size(r.body) == (320, 160)  # the 320x240 box, aspect kept, never below asked
    r = await thumbnail(api, alice, s, m, width="90", height="90", method="crop")
    assert image_size(r.body) == (96, 96)
    again = await thumbnail(api, alice, s, m, width="90", height="90", method="crop")
    assert again.body == r.body  # cached
    assert "sandbox" in r.headers["Content-Security-Policy"]
    # An image already inside the box comes back as it is (never upscaled).
    small = png(20, 10)
    s2, m2 = await upload_ok(api, alice, small, "image/png")
    r = await thumbnail(api, alice, s2, m2, width="96", height="96", method="crop")
    assert r.status == 200 and r.body == small


async def test_animated_thumbnails(api: Api) -> None:
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, gif_animated(200, 200), "image/gif")
    r = await thumbnail(api, alice, s, m, width="96", height="96", method="crop")
    assert r.status == 200 and r.headers["Content-Type"] == "image/png"
    with Image.open(io.BytesIO(r.body)) as img:
        assert getattr(img, "n_frames", 1) == 1
    r = await thumbnail(api, alice, s, m, width="96", height="96", method="crop", animated="true")
    assert r.status == 200 and r.headers["Content-Type"] == "image/webp"
    with Image.open(io.BytesIO(r.body)) as img:
        assert img.n_frames == 3 and img.size == (96, 96)


async def test_thumbnail_refusals(api: Api) -> None:
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, b"not an image", "text/plain")
    r = await thumbnail(api, alice, s, m, width="32", height="32")
    assert (r.status, r.errcode) == (400, "M_UNKNOWN")
    s, m = await upload_ok(api, alice, b"\x89PNG broken", "image/png")
    r = await thumbnail(api, alice, s, m, width="32", height="32")
    assert (r.status, r.errcode) == (400, "M_UNKNOWN")
    s, m = await upload_ok(api, alice, png(50, 50), "image/png")
    for params, code in (
        ({"height": "32"}, "M_MISSING_PARAM"),
        ({"width": "x", "height": "32"}, "M_INVALID_PARAM"),
        ({"width": "0", "height": "32"}, "M_INVALID_PARAM"),
        ({"width": "32", "height": "32", "method": "stretch"}, "M_INVALID_PARAM"),
        ({"width": "32", "height": "32", "animated": "yes"}, "M_INVALID_PARAM"),
    ):
        r = await thumbnail(api, alice, s, m, **params)
        assert (r.status, r.errcode) == (400, code), params


async def test_size_limit_and_quota(make_server: ServerFactory) -> None:
    server = await make_server(
        limits={"max_upload_bytes": 100_000}, media={"max_bytes_per_user": 150_000}
    )
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        r = await upload(api, alice, b"x" * 100_001, "application/octet-stream")
        assert (r.status, r.errcode) == (413, "M_TOO_LARGE")

        async def chunked(n: int):  # type: ignore[no-untyped-def]
            for _ in range(n):
                yield b"y" * 10_000

        assert api.session is not None
        async with api.session.post(
            server.client_url + "/_matrix/media/v3/upload",
            data=chunked(20),
            headers={"Authorization": f"Bearer {alice.access_token}"},
        ) as resp:
            assert resp.status == 413 and (await resp.json())["errcode"] == "M_TOO_LARGE"
        await upload_ok(api, alice, b"a" * 90_000, "application/octet-stream")
        r = await upload(api, alice, b"b" * 90_000, "application/octet-stream")
        assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
        await upload_ok(api, alice, b"c" * 50_000, "application/octet-stream")
        bob = await api.register("bob")  # the quota is per user
        await upload_ok(api, bob, b"b" * 90_000, "application/octet-stream")
        # Nothing refused was kept on disk.
        sizes = sorted(p.stat().st_size for p in content_files(server))
        assert sizes == [50_000, 90_000, 90_000]
        assert list((Path(server.hs.config.media.store_path) / "tmp").iterdir()) == []


async def test_bad_ids_and_traversal_are_refused(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    _, m = await upload_ok(api, alice, b"secret-ish", "text/plain")
    name = server.hs.config.server_name
    for path in (
        f"{AUTHED}/download/{name}/..%2F..%2Fhomeserver.db",
        f"{AUTHED}/download/{name}/%2E%2E",
        f"{AUTHED}/download/{name}/a.b",
        f"{AUTHED}/download/{name}/{m}%2F..",
        f"{AUTHED}/download/bad_server!/{m}",
        f"{AUTHED}/download/..%2F/{m}",
        f"{AUTHED}/download/{name}/../../homeserver.db",
        f"{AUTHED}/thumbnail/{name}/..%2Fsigning.key?width=1&height=1",
        f"/_matrix/media/v3/download/{name}/..%2F..%2Fsigning.key",
    ):
        r = await api.get(path, token=alice.access_token)
        assert r.status in (400, 404), (path, r.status)
        assert isinstance(r.body, dict) and r.errcode in (
            "M_INVALID_PARAM",
            "M_NOT_FOUND",
            "M_UNRECOGNIZED",
        ), (path, r.body)
    r = await download(api, alice, name, "doesNotExist")
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    r = await api.put(
        f"/_matrix/media/v3/upload/{name}/..%2Fx", token=alice.access_token, data=b"z"
    )
    assert (r.status, r.errcode) == (400, "M_INVALID_PARAM")


async def test_create_then_upload(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    bob = await api.register("bob")
    r = await api.post("/_matrix/media/v1/create", token=alice.access_token)
    assert r.status == 200
    assert r.body["unused_expires_at"] > time.time() * 1000
    s, _, m = r.body["content_uri"][len("mxc://") :].partition("/")
    r = await download(api, alice, s, m, params={"timeout_ms": "0"})
    assert (r.status, r.errcode) == (504, "M_NOT_YET_UPLOADED")
    put = f"/_matrix/media/v3/upload/{s}/{m}"
    r = await api.put(put, token=bob.access_token, data=b"hijack")
    assert (r.status, r.errcode) == (403, "M_FORBIDDEN")
    # A download waiting for the upload gets it as soon as it arrives.
    waiting = asyncio.create_task(download(api, bob, s, m, params={"timeout_ms": "60000"}))
    await asyncio.sleep(0)
    r = await api.put(
        put, token=alice.access_token, data=b"later", headers={"Content-Type": "text/plain"}
    )
    assert (r.status, r.body) == (200, {})
    got = await waiting
    assert got.status == 200 and got.body == b"later"
    r = await api.put(put, token=alice.access_token, data=b"again")
    assert (r.status, r.errcode) == (409, "M_CANNOT_OVERWRITE_MEDIA")
    r = await api.put(f"/_matrix/media/v3/upload/{s}/neverCreated", token=alice.access_token)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")


async def test_too_many_pending_creates(make_server: ServerFactory) -> None:
    server = await make_server(media={"max_pending_uploads": 2})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        for _ in range(2):
            assert (
                await api.post("/_matrix/media/v1/create", token=alice.access_token)
            ).status == 200
        r = await api.post("/_matrix/media/v1/create", token=alice.access_token)
        assert (r.status, r.errcode) == (429, "M_LIMIT_EXCEEDED")


async def test_legacy_endpoints_are_frozen(make_server: ServerFactory) -> None:
    frozen = await make_server()
    async with Api(frozen.client_url) as api:
        alice = await api.register("alice")
        s, m = await upload_ok(api, alice, b"new media", "text/plain")
        r = await api.get(f"/_matrix/media/v3/download/{s}/{m}")
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        r = await api.get(f"/_matrix/media/v3/thumbnail/{s}/{m}?width=32&height=32")
        assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    cutoff = int(time.time() * 1000) + 3_600_000  # media stored before this is served
    old = await make_server(media={"legacy_cutoff_ts": cutoff})
    async with Api(old.client_url) as api:
        alice = await api.register("alice")
        s, m = await upload_ok(api, alice, b"old media", "text/plain")
        r = await api.get(f"/_matrix/media/v3/download/{s}/{m}")
        assert r.status == 200 and r.body == b"old media"
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        r = await api.get(f"/_matrix/media/r0/download/{s}/{m}/x.txt")
        assert r.status == 200 and r.headers["Content-Disposition"] == "inline; filename=x.txt"


async def test_quarantine(server: RunningServer, api: Api) -> None:
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, b"bad content", "text/plain")
    assert await server.hs.media.quarantine(s, m)
    r = await download(api, alice, s, m)
    assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
    assert content_files(server) == []


async def test_retention_deletes_media_nobody_read(make_server: ServerFactory) -> None:
    server = await make_server(media={"local_retention_days": 1})
    async with Api(server.client_url) as api:
        alice = await api.register("alice")
        s, old = await upload_ok(api, alice, b"shared bytes", "text/plain")
        _, twin = await upload_ok(api, alice, b"shared bytes", "text/plain")
        _, alone = await upload_ok(api, alice, b"old and alone", "text/plain")
        two_days_ago = server.hs.clock.now_ms() - 2 * 24 * 3600 * 1000
        for media_id in (old, alone):
            await server.hs.db.execute(
                "UPDATE media SET last_access_ts = $1 WHERE media_id = $2", two_days_ago, media_id
            )
        assert await server.hs.media.apply_retention() == 2
        for media_id in (old, alone):
            r = await download(api, alice, s, media_id)
            assert (r.status, r.errcode) == (404, "M_NOT_FOUND")
        r = await download(api, alice, s, twin)  # its file is shared with a deleted one
        assert r.status == 200 and r.body == b"shared bytes"
        assert [p.read_bytes() for p in content_files(server)] == [b"shared bytes"]
