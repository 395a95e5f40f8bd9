"""Admin API for media: quarantine and the remote-cache purge, admins only."""

from __future__ import annotations

from homeserver.app import RunningServer
from tests.helpers import Api
from tests.integration.admin_support import V1, make_admin
from tests.integration.media_support import download, upload_ok


async def test_quarantine_stops_serving_and_refuses_non_admins(
    server: RunningServer, api: Api
) -> None:
    root = await make_admin(server, api)
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, b"hello media", "text/plain")
    path = f"{V1}/media/quarantine/{s}/{m}"

    r = await api.post(path, {})
    assert r.status == 401 and r.body["errcode"] == "M_MISSING_TOKEN"
    r = await api.post(path, {}, token=alice.access_token)
    assert r.status == 403 and r.body["errcode"] == "M_FORBIDDEN"
    assert (await download(api, alice, s, m)).status == 200

    r = await api.post(path, {}, token=root.access_token)
    assert r.status == 200 and r.body == {}
    r = await download(api, alice, s, m)
    assert r.status == 404 and r.body["errcode"] == "M_NOT_FOUND"

    r = await api.post(f"{V1}/media/quarantine/{s}/neverUploaded", {}, token=root.access_token)
    assert r.status == 404 and r.body["errcode"] == "M_NOT_FOUND"
    r = await api.post(f"{V1}/media/quarantine/{s}/bad%20id", {}, token=root.access_token)
    assert r.status == 400 and r.body["errcode"] == "M_INVALID_PARAM"


async def test_purge_media_cache_parameters(server: RunningServer, api: Api) -> None:
    root = await make_admin(server, api)
    alice = await api.register("alice")
    s, m = await upload_ok(api, alice, b"local stays", "text/plain")
    purge = f"{V1}/purge_media_cache"
    r = await api.post(purge, {}, token=root.access_token)
    assert r.status == 400 and r.body["errcode"] == "M_MISSING_PARAM"
    r = await api.post(purge + "?before_ts=yesterday", {}, token=root.access_token)
    assert r.status == 400 and r.body["errcode"] == "M_INVALID_PARAM"
    now = server.hs.clock.now_ms() + 1
    r = await api.post(f"{purge}?before_ts={now}", {}, token=root.access_token)
    assert r.status == 200 and r.body == {"deleted": 0}
    assert (await download(api, alice, s, m)).status == 200  # local media is never purged
