"""Client IP addresses and User-Agents: never stored when configured so, forgotten after retention.

Seen through the admin whois API and the admin device list, as an operator
would look; the retention pass is the job's own method, run with a clock
reading past the retention period instead of waiting for it.
"""

from __future__ import annotations

from homeserver.app import RunningServer
from homeserver.config import parse_duration_ms
from tests.conftest import RestartFn, ServerFactory
from tests.helpers import Api
from tests.integration.admin_support import V1, V2, make_admin

AGENT = {"User-Agent": "PrivacyTestClient/1.0"}


async def connections(api: Api, admin_token: str, user_id: str, device_id: str) -> list[dict]:
    r = await api.get(f"{V1}/whois/{user_id}", token=admin_token)
    assert r.status == 200, r.body
    return list(r.body["devices"][device_id]["sessions"][0]["connections"])


async def admin_device(api: Api, admin_token: str, user_id: str) -> dict:
    r = await api.get(f"{V2}/users/{user_id}/devices", token=admin_token)
    assert r.status == 200, r.body
    (device,) = r.body["devices"]
    return dict(device)


async def test_no_ips_stored_when_turned_off(make_server: ServerFactory) -> None:
    server = await make_server(privacy={"store_client_ips": False})
    async with Api(server.client_url) as api:
        root = await make_admin(server, api)
        bob = await api.register("bob")
        r = await api.get("/account/whoami", token=bob.access_token, headers=AGENT)
        assert r.status == 200
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        # When the device was last seen is still known; where from and with what, not.
        assert isinstance(conn["last_seen"], int)
        assert "ip" not in conn and "user_agent" not in conn
        device = await admin_device(api, root.access_token, bob.user_id)
        assert device["last_seen_ip"] is None and isinstance(device["last_seen_ts"], int)
        r = await api.get("/devices", token=bob.access_token)
        assert [d["last_seen_ip"] for d in r.body["devices"]] == [None]


async def test_retention_purge_forgets_old_ips(make_server: ServerFactory) -> None:
    server = await make_server(privacy={"client_ip_retention": "1h"})
    async with Api(server.client_url) as api:
        root = await make_admin(server, api)
        bob = await api.register("bob")
        assert (await api.get("/account/whoami", token=bob.access_token, headers=AGENT)).status
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        assert conn["ip"] == "127.0.0.1" and conn["user_agent"] == AGENT["User-Agent"]
        last_seen = conn["last_seen"]
        retention = server.hs.client_ips
        # Within the retention period nothing goes.
        assert await retention.purge(now_ms=last_seen + parse_duration_ms("59m")) == 0
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        assert conn["ip"] == "127.0.0.1"
        # Past it, bob's device (and root's, seen at the same time) lose theirs.
        assert await retention.purge(now_ms=last_seen + parse_duration_ms("61m")) >= 1
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        assert conn == {"last_seen": last_seen}
        device = await admin_device(api, root.access_token, bob.user_id)
        assert device["last_seen_ip"] is None and device["last_seen_ts"] == last_seen


async def test_turning_storage_off_clears_what_was_stored(
    make_server: ServerFactory, restart_server: RestartFn
) -> None:
    server: RunningServer = await make_server()
    async with Api(server.client_url) as api:
        root = await make_admin(server, api)
        bob = await api.register("bob")
        assert (await api.get("/account/whoami", token=bob.access_token)).status == 200
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        assert conn["ip"] == "127.0.0.1"
    # The operator turns storage off and restarts; the purge (at start-up, then hourly)
    # clears what is left, whatever its age. Run here so as not to race the start-up pass.
    server.hs.config.privacy.store_client_ips = False
    again = await restart_server(server)
    await again.hs.client_ips.purge()
    async with Api(again.client_url) as api:
        # (bob makes no request here: only the purge can have cleared his device.)
        (conn,) = await connections(api, root.access_token, bob.user_id, bob.device_id)
        assert "ip" not in conn
