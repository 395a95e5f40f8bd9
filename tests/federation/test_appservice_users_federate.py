"""Application-service users take part in federation and end-to-end encryption like any
other user (issue 13): a bridge's user on server A, acting through the service's token
(identity assertion with ``user_id`` and ``device_id``), joins a room on server B, talks
there, publishes device keys that B's users fetch over federation, and receives their
to-device messages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import ServerFactory
from tests.federation.fedutil import eventually
from tests.federation.rooms_support import name, q, register, timeline_bodies
from tests.helpers import Api
from tests.integration.appservice_bridge import AS_TOKEN, registration, write_registration
from tests.integration.e2ee_device import Device

BRIDGE_DEVICE = "BRIDGEDEV"


async def test_bridge_user_federates_and_shares_keys(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    info = registration(0)
    info["url"] = None  # a service that only acts, never receives (allowed by the spec)
    info["namespaces"]["users"] = [{"exclusive": True, "regex": r"@bridge_.*:127\.0\.0\.1:.*"}]
    info["namespaces"]["aliases"] = []
    a = await make_server(
        federated=True, app_service_config_files=[write_registration(tmp_path, info)]
    )
    b = await make_server(federated=True)
    api_b, bob = await register(b, "bob")
    async with Api(a.client_url) as api_a:
        r = await api_a.post(
            "/register",
            {
                "type": "m.login.application_service",
                "username": "bridge_carol",
                "device_id": BRIDGE_DEVICE,
            },
            token=AS_TOKEN,
        )
        assert r.status == 200, r.body
        carol = r.body["user_id"]
        as_carol = {"user_id": carol, "device_id": BRIDGE_DEVICE}

        created = await api_b.post("/createRoom", {"preset": "public_chat"}, token=bob.access_token)
        room_id = created.body["room_id"]
        r = await api_a.post(
            f"/join/{q(room_id)}", {}, token=AS_TOKEN, params={**as_carol, "server_name": name(b)}
        )
        assert r.status == 200, r.body
        r = await api_a.put(
            f"/rooms/{q(room_id)}/send/m.room.message/t1",
            {"msgtype": "m.text", "body": "hello from the bridge"},
            token=AS_TOKEN,
            params=as_carol,
        )
        assert r.status == 200, r.body
        bodies = await eventually(
            lambda: timeline_bodies(api_b, bob, room_id),
            lambda got: "hello from the bridge" in got,
        )
        assert "hello from the bridge" in bodies

        # End-to-end encryption: the bridge's device keys reach B's users over federation.
        device = Device(carol, BRIDGE_DEVICE)
        r = await api_a.post(
            "/keys/upload", {"device_keys": device.device_keys()}, token=AS_TOKEN, params=as_carol
        )
        assert r.status == 200, r.body

        async def query() -> Any:
            r = await api_b.post(
                "/keys/query", {"device_keys": {carol: []}}, token=bob.access_token
            )
            return r.body.get("device_keys", {}).get(carol, {})

        keys = await eventually(query, lambda got: BRIDGE_DEVICE in got)
        assert keys[BRIDGE_DEVICE]["keys"][f"ed25519:{BRIDGE_DEVICE}"] == device.ed25519

        # And B's to-device messages (room keys, in real life) reach that device.
        r = await api_b.put(
            "/sendToDevice/m.room_key_request/td1",
            {"messages": {carol: {BRIDGE_DEVICE: {"secret": "opaque"}}}},
            token=bob.access_token,
        )
        assert r.status == 200, r.body

        async def inbox() -> list[dict[str, Any]]:
            r = await api_a.get("/sync", token=AS_TOKEN, params={**as_carol, "timeout": "0"})
            assert r.status == 200, r.body
            events: list[dict[str, Any]] = r.body.get("to_device", {}).get("events", [])
            return events

        got = await eventually(inbox, lambda events: bool(events))
        assert got[0]["sender"] == bob.user_id and got[0]["content"] == {"secret": "opaque"}
    await api_b.__aexit__(None, None, None)
